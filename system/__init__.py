"""The reference order -> billing -> notification system under test.

A normal, carefully built service: `orders.place_order` validates an order,
stores it in PostgreSQL, then adds one BullMQ flow (parent `notify-user`,
children `update-inventory` and `record-billing`); worker processes
(`python -m system.worker`) run each job's effect in one guarded transaction;
`replay` rebuilds lost jobs from PostgreSQL, `archive` moves finished jobs out
of Redis, `status` says where an order is stuck, `reset` empties everything
between test examples.

Seams for known bugs
--------------------
The properties prove they can fail by swapping in a known bug without
editing this package. Every piece of logic such a bug would replace is looked
up at call time through a module attribute, so a module named in
`BULLPROOF_PRELOAD` (imported by each worker before it starts) or a
monkeypatch in the test process can replace it:

- random job ids: `system.ids.job_ids` / `system.ids.saga_job_ids`
- idempotency check outside the transaction: the effect functions
  `system.effects.reserve_inventory`, `record_billing`, `send_notification`,
  `compensate_inventory` (each is one guarded transaction today)
- no unique constraint: drop the constraints named in
  `system.schema.CONSTRAINTS` (the effects insert with a bare
  `ON CONFLICT DO NOTHING`, which then no longer conflicts)
- notification without gating (plain jobs instead of a flow):
  `system.jobs.enqueue_order` or `system.jobs.order_flow`
- replay with fresh ids: `system.replay.replay_flow`
- lock shorter than the work: `--lock-duration-ms` on the worker together
  with `system.processors.simulate_work` (a blocking sleep there starves the
  lock renewal) or `BULLPROOF_WORK_MS`
- `removeOnComplete: true`: `system.jobs.DEFAULT_JOB_OPTIONS`
- redis-py's default 5 s socket timeout: `system.config.redis_settings_from_env`
  (return the settings `.with_changes(socket_timeout=5)`) or
  `system.redis_client.master_client`
- worker options such as `runRetryDelay`: `system.worker.WORKER_OPTIONS`
"""
