-- Every logged change is announced on the channel `fis_lookup_changes` when its transaction
-- commits, whoever wrote it (an instance, or a command such as `rotate-pepper`): instances
-- sharing the database listen and apply it at once instead of at their next poll of the log.
-- A transaction announces once, however many rows it logged.
CREATE FUNCTION fis_announce_lookup_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fis_lookup_changes', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER lookup_changes_announced AFTER INSERT ON lookup_changes
    FOR EACH STATEMENT EXECUTE FUNCTION fis_announce_lookup_change();
