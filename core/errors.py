"""The base class of the errors whose message is meant for the user.

Plain Python, importing nothing of the project: every module can subclass it. The
CLI prints a SuperresError as one line; any other exception is a bug and keeps its
traceback.
"""


class SuperresError(ValueError):
  """A problem with the user's input, files or machine; str() says what and what to do.

  A ValueError, so code that already catches ValueError keeps working.
  """
