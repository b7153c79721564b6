# podium worker / aggregator / CLI image.
#   docker build -t podium:cpu .                              (CPU torch: CPU workers, the aggregator)
#   docker build -t podium:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .   (GPU workers)
# Workers measure TorchScript (torch) and ONNX (onnxruntime, CPU: for ONNX on a GPU, add onnxruntime-gpu) models,
# on test data of token ids or of texts (tokenizers), locally or on a Triton server (tritonclient); the torch extra
# adds what MLflow's pytorch flavor needs to load the models of plain MLflow runs (pandas).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY podium ./podium
COPY config ./config
RUN pip install --extra-index-url "$TORCH_INDEX" "torch==2.13.0" \
 && pip install ".[torch,triton,onnx,text]"
ENV PODIUM_CONFIG_DIR=/app/config
USER nobody
ENTRYPOINT ["podium"]
CMD ["--help"]
