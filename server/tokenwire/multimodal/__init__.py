"""Image-and-text models: LLaVA-family chat, CLIP / OpenCLIP classification and embeddings.

images.py     client images as untrusted input (formats, mime types, size / pixel limits)
chat.py       MultimodalChatRequest → chat template + processor → prompt ids and vision
              inputs for the generation engine
encoders.py   text / image encoders behind one interface (transformers CLIP-style models)
open_clip.py  native open_clip checkpoints (optional extra)
clip.py       ClassifyImage / Embed requests → batch items → one batched forward
"""

from .images import ImageLimits, decode_image

__all__ = ["ImageLimits", "decode_image"]
