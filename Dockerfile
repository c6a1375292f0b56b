# Vigil worker / replay image. Used by docker-compose.yml (Apache Kafka in production).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md constraints.txt ./
COPY vigil vigil
COPY stream stream
COPY models models
COPY alerts alerts
# /var/lib/vigil: the board's users file (the board-data volume in docker-compose.yml)
RUN pip install -c constraints.txt . && useradd --uid 10001 --no-create-home vigil \
    && mkdir -p /var/lib/vigil && chown 10001 /var/lib/vigil

USER 10001
ENV VIGIL_DATA_DIR=/tmp/vigil-state VIGIL_WEB_HOST=0.0.0.0
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["vigil"]
CMD ["worker"]
