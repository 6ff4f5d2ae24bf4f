# CPU-only image of the posture web demo (python -m app), serving a trained run mounted at /models/run.
#
#   docker build -t posture-demo .
#   docker run --rm -p 127.0.0.1:7860:7860 -v "$PWD/models/sample:/models/run:ro" posture-demo
#   # then open http://127.0.0.1:7860
#
# Weights never go into the image (nor into git): the run folder (model.safetensors, config.json,
# metrics.json and, after `python -m posture.export`, model.onnx) is mounted read-only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_OFFLINE=1 \
    NO_ALBUMENTATIONS_UPDATE=1

WORKDIR /srv/posture

# CPU wheels of the pinned torch/torchvision first (the default PyPI wheels pull in ~3 GB of CUDA);
# requirements.txt's `torch==2.14.1` is then already satisfied by 2.14.1+cpu.
COPY requirements.txt requirements-pose.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements.txt \
 && pip install --no-deps -r requirements-pose.txt

COPY pyproject.toml README.md ./
COPY posture ./posture
COPY app ./app
RUN pip install --no-deps . \
 && useradd --create-home --uid 10001 posture

USER posture
EXPOSE 7860
# The check asks the port the app was started with (another --port included): the app records where it
# listens in its private runtime folder as it starts, and `python -m app.healthcheck` reads that record.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-m", "app.healthcheck", "--timeout", "4"]
# 0.0.0.0 inside the container only; publish the port on the host's loopback (see above).
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "7860", "--run", "/models/run"]
