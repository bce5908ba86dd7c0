"""Image and file I/O: decoding/encoding images in their original layout, atomic writes,
input discovery and conversions to the network's tensors."""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_json
from .convert import from_tensor, quantize, to_tensor, to_uint8
from .discover import file_sha256, list_images
from .images import (
    IMAGE_EXTENSIONS,
    MODES,
    Image,
    ImageError,
    luma,
    output_layout,
    read_image,
    to_planes,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MODES",
    "Image",
    "ImageError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "file_sha256",
    "from_tensor",
    "list_images",
    "luma",
    "output_layout",
    "quantize",
    "read_image",
    "to_planes",
    "to_tensor",
    "to_uint8",
    "write_image",
]
