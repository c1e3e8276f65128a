"""Where things are inside the project's PostgreSQL pods (images/postgres/).

Shared by the StatefulSets (builders/postgres.py) and WAL archiving
(builders/archiving.py), which mounts the same volumes.
"""

from __future__ import annotations

from typing import Final

DATA_DIR: Final = "/var/lib/postgresql/data"
# A subdirectory: the volume's root may hold lost+found, which initdb refuses.
PGDATA: Final = f"{DATA_DIR}/pgdata"
RUN_DIR: Final = "/var/run/postgresql"
# Written by the image's entrypoint once per incarnation of a database (an
# initdb; a restore writes a new one), inside PGDATA so that a replica's clone
# carries its primary's: the WAL archive's path ends in it.
INCARNATION_FILE: Final = f"{PGDATA}/stackforge-incarnation"
