# gpunn on an NVIDIA GPU. The CUDA libraries come as wheels with gpunn[cuda12x]
# (cupy-cuda12x[ctk]), so a base image with only the driver hooks is enough.
#   docker build -t gpunn .
#   docker run --rm --gpus all gpunn                  # gpunn train on the bundled digits
#   docker run --rm --gpus all gpunn info
#   docker run --rm --gpus all -v "$PWD:/data" gpunn train --data /data/my.csv
FROM nvidia/cuda:12.8.1-base-ubuntu24.04

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gpunn
COPY pyproject.toml README.md ./
COPY gpunn ./gpunn
COPY kernels ./kernels
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir '.[cuda12x]'

ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["gpunn"]
CMD ["train"]
