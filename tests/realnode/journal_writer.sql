-- An application's writes, run by psql in a pod of the tenant (tests/realnode/journal.py):
-- one connection, held for the whole test, inserting a row every half second. psql prints
-- each row only once the server has committed it, so the pod's log is the list of
-- acknowledged writes, and each row's timestamp says when it was written.
INSERT INTO shop.journal (at) VALUES (clock_timestamp()) RETURNING id, at
\watch 0.5
