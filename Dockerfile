# One image for every service (receiver, verifier, status API, notifier); the compose file picks the module.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY hookstatus_client ./hookstatus_client
RUN pip install --no-cache-dir . && useradd --system --uid 10001 app
USER app
# Overridden per service in docker-compose.yml / the Kubernetes manifests.
CMD ["python", "-m", "services.receiver"]
