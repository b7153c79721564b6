# The MLflow tracking server, pinned to the version of podium's MLflow client (pyproject.toml), with the
# PostgreSQL driver. A test keeps the pin equal to the client's version.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg2-binary==2.9.13"
EXPOSE 5000
