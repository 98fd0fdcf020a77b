"""ExampleGen for a folder tree of image files (TFX has none)."""
from superres_tfx.components.image_example_gen.component import ImageExampleGen
from superres_tfx.components.image_example_gen.executor import Executor
from superres_tfx.components.image_listing import NoImagesError
from superres_tfx.components.image_listing import list_image_files
