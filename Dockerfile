# EdgeFace verification service, CPU only. Three stages:
#   serve    Python, the serving requirements (requirements-serve.txt: ONNX Runtime, FastAPI; no
#            PyTorch) and the code.
#   export   serve plus the full install (CPU-only torch); writes the ONNX files of the
#            checkpoints given at build time (checkpoints/<model>.pt in the build context).
#   runtime  serve plus the ONNX files (and checkpoints) of the export stage. The default target.
#
# 1. Checkpoints given at build time, ONNX files baked into the image:
#   python -m backbones.download edgeface_s_gamma_05 --dir checkpoints
#   docker build -t edgeface .                  # --build-arg EDGEFACE_MODEL=edgeface_xs_q ...
#   docker run --rm -p 8000:8000 edgeface
# 2. Checkpoints and ONNX files mounted at run time (an image without weights):
#   docker build --target export -t edgeface-export . && docker build -t edgeface .
#   docker run --rm -v "$PWD/checkpoints:/app/checkpoints:ro" -v "$PWD/onnx:/app/onnx" \
#     edgeface-export python -m verification.export edgeface_s_gamma_05   # once per checkpoint
#   docker run --rm -p 8000:8000 -v "$PWD/checkpoints:/app/checkpoints:ro" \
#     -v "$PWD/onnx:/app/onnx:ro" edgeface
FROM python:3.11-slim AS serve
# The model served (and exported by the export stage).
ARG EDGEFACE_MODEL=edgeface_s_gamma_05

ENV EDGEFACE_MODEL=$EDGEFACE_MODEL \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDGEFACE_HOST=0.0.0.0 \
    EDGEFACE_PORT=8000 \
    EDGEFACE_CHECKPOINT_DIR=/app/checkpoints \
    EDGEFACE_ONNX_DIR=/app/onnx \
    EDGEFACE_DATA_DIR=/app/data

WORKDIR /app
COPY requirements-serve.txt .
RUN pip install -r requirements-serve.txt
RUN useradd --create-home --uid 10001 edgeface
COPY --chown=edgeface:edgeface . .


FROM serve AS export
# CPU-only wheels (the default torch wheels bundle CUDA, several GB); only this stage has them.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements.txt
# Without a checkpoint in the build context the image carries no weights (way 2 above).
RUN mkdir -p /app/onnx \
 && if [ -f "checkpoints/$EDGEFACE_MODEL.pt" ]; then \
      python -m verification.export "$EDGEFACE_MODEL"; \
    fi


FROM serve AS runtime
COPY --from=export --chown=edgeface:edgeface /app/onnx /app/onnx
RUN mkdir -p /app/data && chown edgeface:edgeface /app/data
USER edgeface
# The SQLite gallery: mount a volume here (docker run -v edgeface-data:/app/data ...).
VOLUME /app/data

EXPOSE 8000
# Liveness only (/healthz answers while the model loads); orchestrators route on /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EDGEFACE_PORT', '8000'), timeout=4)"

CMD ["python", "api.py"]
