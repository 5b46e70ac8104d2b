"""The exit codes of the `warden` command, one table for the parser and the commands.

0 success; 1 a runtime failure (store or platform unreachable, a workspace unknown to
`explain`); 2 bad input (a policy file with problems, bad arguments); 130 interrupted
(Ctrl-C: SIGINT, as shells report it, 128 + 2).
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_INTERRUPTED: Final = 130
