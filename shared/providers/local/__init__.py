"""The local engine: camera-motion videos rendered in-process (``engine_provider``; the renderer in ``engine``,
which loads OpenCV and PyAV and is left out of the Lambda package)."""
