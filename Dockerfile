FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY switchboard ./switchboard
RUN pip install --no-cache-dir -c constraints.txt .
RUN useradd --create-home switchboard && mkdir -p /var/lib/switchboard && chown switchboard /var/lib/switchboard
USER switchboard
CMD ["switchboard", "--help"]
