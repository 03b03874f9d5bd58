# GPU image that runs cli.py. Build: docker build -t twostream .
# Run:   docker run --gpus all --ipc=host -v /data:/data twostream fit --config configs/quickstart.yaml
FROM pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime

# decord's and PyAV's wheels bundle their FFmpeg; OpenCV (headless) needs glib; torchcodec (optional) needs FFmpeg.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/twostream
COPY pyproject.toml README.md cli.py ./
COPY flow ./flow
COPY datamodules ./datamodules
COPY models ./models
COPY lightning_modules ./lightning_modules
COPY configs ./configs
RUN pip install --no-cache-dir .

ENTRYPOINT ["python", "cli.py"]
CMD ["--help"]
