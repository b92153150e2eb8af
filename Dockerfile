# ali-dist runtime image: the same image for the Ray head and workers.
#   docker build -t ali-dist .
#   docker run --rm ali-dist python -m ali_dist.train --help
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends git libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# Never run as root: Ray, training and MLflow all work as an ordinary user.
RUN useradd --create-home --uid 1000 ali
WORKDIR /home/ali/ali-dist

COPY --chown=ali:ali pyproject.toml README.md ./
COPY --chown=ali:ali ali_dist ./ali_dist
COPY --chown=ali:ali data_tools ./data_tools
COPY --chown=ali:ali tune ./tune
RUN pip install --no-cache-dir -e . && chown -R ali:ali /home/ali

USER ali
ENV ALI_DIST_HOME=/home/ali/.cache/ali_dist \
    PYTHONUNBUFFERED=1
CMD ["python", "-m", "ali_dist.train"]
