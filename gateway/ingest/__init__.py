"""The ingest wing (../shared/ARCHITECTURE.md, "The gateway's store and its
processes"): network -> verifiers -> writer -> ack, above the store.

- `network.py`: the MQTT side (`GatewayService`): subscriptions, acks out,
  and every message that is not an upload handed to the handler plugged in;
- `verify.py`: one uplink message into verified records and rejections;
- `verified.py`: what a message becomes before the writer sees it, and the
  wire between verifier processes and the writer;
- `fastpath.py`: the fast, allocation-light check of a batch;
- `verifier.py`: the verifier processes;
- `writer.py`: the writer, its group commit and the acks (`Ingest`): one
  per gateway process, several sharing one database (`--share-group`);
- `pipeline.py`: the process pipeline `gateway run` starts (`IngestProcess`);
- `follow.py`: followers, the work done on stored records after the commit.

Deliberately empty: `python -m gateway.ingest.verifier` loads only what a
verifier needs, not the writer's imports.
"""
