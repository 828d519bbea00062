"""Apps are targets too: an app generated from a bundle, checked and timed where it will run.

`web`: a static web page (onnxruntime-web, LiteRT.js) in headless Chromium. Its runners
(`web-onnx`, `web-tflite`) are registered in `edgecls.runtimes.RUNTIMES` by name, so verify and
bench reach them through the registry; nothing below `apps` imports it.
"""
