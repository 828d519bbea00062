"""The bundle's model in a web app (an app is a target too): `build` writes a static app
(onnxruntime-web or LiteRT.js, pinned and installed from npm), `serve` hosts it on 127.0.0.1 with the
headers WebAssembly threads need, `browser` drives it in headless Chromium (Playwright) to read its
self-test, classify images for `edgecls verify --runtime web-onnx|web-tflite` and time it in the page
for `edgecls bench`.
"""

from .build import AppConfig, AppResult, build_app

__all__ = ["AppConfig", "AppResult", "build_app"]
