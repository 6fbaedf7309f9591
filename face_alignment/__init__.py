"""Face detection (MTCNN) and five-point alignment to 112x112 crops."""

from .align import (
    REFERENCE_LANDMARKS,
    AlignedFace,
    align_faces,
    default_detector,
    fallback_landmarks,
    get_aligned_face,
    reference_landmarks,
    similarity_transform,
    warp_face,
)
from .detection import DetectedFace, FaceDetector, select_face
from .images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageSource,
    ImageTooLargeError,
    InvalidImageError,
    load_image,
    load_image_reduced,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "REFERENCE_LANDMARKS",
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "ImageError",
    "ImageSource",
    "ImageTooLargeError",
    "InvalidImageError",
    "align_faces",
    "default_detector",
    "fallback_landmarks",
    "get_aligned_face",
    "load_image",
    "load_image_reduced",
    "reference_landmarks",
    "select_face",
    "similarity_transform",
    "warp_face",
]
