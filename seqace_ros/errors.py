"""The base of every error seqace_ros raises on purpose.

Each error keeps a built-in base too (a bad map is still a ValueError, a missing native module an
ImportError) so callers that catch those keep working; the command line catches ``SeqaceError``
once and prints its message, which names the problem and the fix.
"""


class SeqaceError(Exception):
    """A problem seqace_ros recognised; the message says what is wrong and what to do."""
