"""The camera: its input path, the interpreters it runs (TensorFlow Lite Micro on the host, OpenMV's
own libraries on an emulated Cortex-M7), what it accepts, the bundle, and an emulated camera for main.py."""
