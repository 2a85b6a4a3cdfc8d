FROM python:3.11-slim
# production unless told otherwise: the SSRF guard on, real secrets required, no demo
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/var/lib/vein2vein APP_ENV=production
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY workers ./workers
COPY labels ./labels
RUN pip install --no-cache-dir . && useradd --system --home /app vein2vein \
    && mkdir -p /var/lib/vein2vein/keys && chown -R vein2vein /var/lib/vein2vein \
    && chmod 700 /var/lib/vein2vein/keys
USER vein2vein
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "services.web:create_app()"]
