from dlrq.cli import main

main()
