"""Super-resolution network architectures behind a name registry.

Importing the package registers every architecture.
"""
from superres_tfx.components.models import edsr_arch  # noqa: F401  (registers "edsr")
from superres_tfx.components.models import espcn_arch  # noqa: F401  (registers "espcn")
from superres_tfx.components.models import fsrcnn_arch  # noqa: F401  (registers "fsrcnn")
from superres_tfx.components.models import resize_conv_arch  # noqa: F401  (registers "resize_conv")
from superres_tfx.components.models.registry import ARCHITECTURES
from superres_tfx.components.models.registry import architecture_names
from superres_tfx.components.models.registry import build_model
from superres_tfx.components.models.registry import multiply_adds_per_output_pixel
from superres_tfx.components.models.registry import register
