"""The leaf of the project: names, folders and error types every layer agrees on.

Plain Python, no TensorFlow and no project imports, so the CLI's quick commands and
the model server's environment can import it.
"""
