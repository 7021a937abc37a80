-- The first release's schema: accounts are referred to by user_id.
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text,
    email text NOT NULL
);
