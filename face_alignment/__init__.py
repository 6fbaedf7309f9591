"""Face detection (MTCNN) and five-point alignment to 112x112 crops."""

from .align import (
    REFERENCE_LANDMARKS,
    AlignedFace,
    align_faces,
    default_detector,
    fallback_landmarks,
    get_aligned_face,
    similarity_transform,
    warp_face,
)
from .detection import DETECT_MAX_SIDE, DetectedFace, FaceDetector, select_face
from .errors import ImageError, ImageTooLargeError, InputError, InvalidImageError
from .images import (
    DECODE_MEMORY_KEPT_MB,
    DEFAULT_MAX_PIXELS,
    HUGE_PAGES_TUNABLE,
    ImageSource,
    keep_decode_memory,
    load_image,
    load_image_reduced,
    probe_image,
    with_huge_pages,
)
from .mtcnn import MIN_FACE_SIZE

__all__ = [
    "DECODE_MEMORY_KEPT_MB",
    "DEFAULT_MAX_PIXELS",
    "DETECT_MAX_SIDE",
    "HUGE_PAGES_TUNABLE",
    "MIN_FACE_SIZE",
    "REFERENCE_LANDMARKS",
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "ImageError",
    "ImageSource",
    "ImageTooLargeError",
    "InputError",
    "InvalidImageError",
    "align_faces",
    "default_detector",
    "fallback_landmarks",
    "get_aligned_face",
    "keep_decode_memory",
    "load_image",
    "load_image_reduced",
    "probe_image",
    "with_huge_pages",
    "select_face",
    "similarity_transform",
    "warp_face",
]
