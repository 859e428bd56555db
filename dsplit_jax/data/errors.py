"""The one exception the data layer raises for bad or missing files."""


class DataError(ValueError):
  """A dataset file is missing, unreadable or inconsistent.

  The message is kept to one line that names the file, so that a failed run's
  log says what to fix without a traceback.
  """

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))
