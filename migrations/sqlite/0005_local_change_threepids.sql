-- The 3PIDs a change of local 3PIDs touched, as a JSON list of [medium, address], so that each
-- instance applies the change to its lookup index for those addresses alone instead of reading
-- every local 3PID again (NULL: too many, or a change of another kind; a local change without
-- it reloads the local part).
ALTER TABLE lookup_changes ADD COLUMN threepids TEXT;
