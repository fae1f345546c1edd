-- Revocation that reaches live sessions (server.auth.standing).
--
-- token_generation: every access token carries the generation it was issued under
-- ("gen"); bumping it ("log out everywhere", a password change) invalidates every
-- access token already issued, without a deny-list.
-- disabled_at: a disabled account cannot log in, refresh, or use a token or key.
ALTER TABLE users
    ADD COLUMN token_generation integer     NOT NULL DEFAULT 0,
    ADD COLUMN disabled_at      timestamptz;

-- Every change that ends or narrows someone's access is announced on the channel
-- tickgraph_auth, from the database itself: whichever code path (or operator's SQL)
-- makes the change, every server process hears of it when the transaction commits,
-- and closes or adjusts the open WebSockets concerned. Identical payloads within one
-- transaction are delivered once, so revoking a whole family of refresh tokens is one
-- message.
CREATE FUNCTION tickgraph_notify_auth() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('tickgraph_auth',
            json_build_object('k', 'user', 'u', NEW.id)::text);
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('tickgraph_auth',
            json_build_object('k', 'key', 'u', NEW.user_id, 'id', NEW.id)::text);
    ELSIF TG_TABLE_NAME = 'refresh_tokens' THEN
        PERFORM pg_notify('tickgraph_auth',
            json_build_object('k', 'session', 'u', NEW.user_id, 's', NEW.family_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_auth_change
    AFTER UPDATE OF tier, is_admin, token_generation, disabled_at ON users
    FOR EACH ROW
    WHEN (OLD.tier IS DISTINCT FROM NEW.tier
          OR OLD.is_admin IS DISTINCT FROM NEW.is_admin
          OR OLD.token_generation IS DISTINCT FROM NEW.token_generation
          OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at)
    EXECUTE FUNCTION tickgraph_notify_auth();

CREATE TRIGGER api_keys_revoked
    AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION tickgraph_notify_auth();

CREATE TRIGGER refresh_tokens_revoked
    AFTER UPDATE OF revoked_at ON refresh_tokens
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION tickgraph_notify_auth();

-- A user deleted outright (ON DELETE CASCADE takes their keys and tokens) is announced
-- too: their sockets must close.
CREATE FUNCTION tickgraph_notify_user_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tickgraph_auth', json_build_object('k', 'user', 'u', OLD.id)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_deleted
    AFTER DELETE ON users
    FOR EACH ROW
    EXECUTE FUNCTION tickgraph_notify_user_deleted();

-- Recently revoked sessions are reloaded whenever a process (re)connects its listener.
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at)
    WHERE revoked_at IS NOT NULL;
