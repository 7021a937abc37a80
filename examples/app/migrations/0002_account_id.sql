-- Expand: the new column is nullable, so the release before this one (which never writes it) keeps
-- working; this release writes user_id and account_id both and reads account_id.
ALTER TABLE users ADD COLUMN account_id text;
UPDATE users SET account_id = user_id WHERE account_id IS NULL;
