-- Migrate: this release reads and writes account_id only. The rows the first release wrote while the
-- second was rolling out are backfilled, then account_id becomes required without a long lock: a
-- NOT VALID check is validated (no exclusive lock), and SET NOT NULL uses it instead of a scan.
-- conveyor: unused users.user_id
UPDATE users SET account_id = user_id WHERE account_id IS NULL;
ALTER TABLE users ADD CONSTRAINT users_account_id_not_null CHECK (account_id IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_account_id_not_null;
ALTER TABLE users ALTER COLUMN account_id SET NOT NULL;
