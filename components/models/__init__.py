"""Super-resolution network architectures behind a name registry.

Importing the package registers every architecture.
"""
from components.models import edsr_arch  # noqa: F401  (registers "edsr")
from components.models import espcn_arch  # noqa: F401  (registers "espcn")
from components.models import fsrcnn_arch  # noqa: F401  (registers "fsrcnn")
from components.models import resize_conv_arch  # noqa: F401  (registers "resize_conv")
from components.models.registry import ARCHITECTURES
from components.models.registry import architecture_names
from components.models.registry import build_model
from components.models.registry import multiply_adds_per_output_pixel
from components.models.registry import register
