# EdgeFace verification service, CPU only.
#   docker build -t edgeface .
#   docker run --rm -p 8000:8000 -v "$PWD/checkpoints:/app/checkpoints:ro" \
#     -v edgeface-onnx:/app/cache/onnx edgeface
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDGEFACE_HOST=0.0.0.0 \
    EDGEFACE_PORT=8000 \
    EDGEFACE_CHECKPOINT_DIR=/app/checkpoints \
    EDGEFACE_ONNX_DIR=/app/cache/onnx \
    EDGEFACE_DATA_DIR=/app/data

WORKDIR /app

# CPU-only wheels keep the image small (the default torch wheels bundle CUDA, several GB).
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements.txt

RUN useradd --create-home --uid 10001 edgeface
COPY --chown=edgeface:edgeface . .
RUN mkdir -p /app/cache/onnx /app/data && chown -R edgeface:edgeface /app/cache /app/data
USER edgeface

# The SQLite gallery: mount a volume here (docker run -v edgeface-data:/app/data ...).
VOLUME /app/data
EXPOSE 8000
# Liveness only (/healthz answers while the model loads); orchestrators route on /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EDGEFACE_PORT', '8000'), timeout=4)"

CMD ["python", "api.py"]
