-- Contract: no running version uses user_id any more (the third release marked it unused).
ALTER TABLE users DROP COLUMN user_id;
