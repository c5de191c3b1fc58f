# One image for every service of the suite; the container's command chooses the service:
#   python user_service/main.py | mobile_service/main.py | llm_service/main.py | image_service/main.py
#   python web_service/main.py | python -m common.migrations (the prestart step)
# docker-compose.yml runs them all; see deploy/README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    IMAGE_STORAGE_DIR=/data/images

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes. Runtime
# requirements only (no test or lint tools); every pinned package ships a wheel, so no compiler.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# A non-root user; it may write only logs/, data/ and the image store (a volume in compose).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/data /app/logs /data/images \
    && chown -R app:app /app/data /app/logs /data

# The source (see .dockerignore: no tests, no .env, no local data), owned by root: read-only to the app.
COPY . .

USER app
EXPOSE 8000 8001 8002 8003 8004

# No default service: print the choices. docker-compose.yml sets each container's command.
CMD ["python", "main.py", "--help"]
