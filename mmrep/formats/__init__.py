"""Other tools' formats: LeRobot datasets (both ways), robomimic's loader, encoders and policies as
safetensors and ONNX. Each optional package is imported only by the module that needs it."""
