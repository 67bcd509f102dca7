# One image for StepChange and the Python sample application.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 STEPCHANGE_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stepchange stepchange
COPY conductor conductor
COPY workflows workflows
COPY forks forks
RUN pip install --no-cache-dir . dbos==3.2.0
COPY . .
EXPOSE 8001
CMD ["sh", "-c", "python manage.py migrate --noinput && python -m stepchange.server -b 0.0.0.0 -p 8001 --proxy-headers"]
