"""Running an exported model on a photo of any size: tiles, PNG streams, memory bounds.

Below both the model server and the command line, which share this code; it imports
only superres_tfx.imaging and superres_tfx.core.
"""
