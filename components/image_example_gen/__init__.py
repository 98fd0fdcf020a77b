"""ExampleGen for a folder tree of image files (TFX has none)."""
from components.image_example_gen.component import ImageExampleGen
from components.image_example_gen.executor import Executor
from components.image_listing import NoImagesError
from components.image_listing import list_image_files
