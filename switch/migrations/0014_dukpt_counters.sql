-- DUKPT transaction counters each PIN pad has used, shared by every switchd process on the database and
-- kept across restarts: a PIN block captured once cannot be replayed with its KSN at another process, or
-- after a restart (switch/adapters/postgres/dukpt.py). The rules are those of switch/domain/dukpt.py
-- (`KsnReplayGuard`): per PIN pad (key set id and device id), the counters of the last `p_window` below
-- the highest one are kept, with the request that used each; a counter is accepted when it is new and
-- not `p_window` or more below the highest, or when the same request (a retransmission) uses it again.

CREATE TABLE dukpt_counters (
    pin_pad     text COLLATE "C" NOT NULL CHECK (length(pin_pad) BETWEEN 1 AND 64),
    counter     integer NOT NULL CHECK (counter BETWEEN 1 AND 2097151),
    request_id  text COLLATE "C" NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
    used_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pin_pad, counter)
);

CREATE FUNCTION dukpt_use_counter(p_pin_pad text, p_counter integer, p_request_id text, p_window integer)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    used_by text;
    highest integer;
BEGIN
    IF p_window IS NULL OR p_window < 1 THEN
        RAISE EXCEPTION 'dukpt_use_counter: the window must be positive';
    END IF;
    -- One PIN pad's counters one request at a time (two processes using one counter: one of them wins).
    PERFORM pg_advisory_xact_lock(hashtextextended('dukpt:' || p_pin_pad, 0));
    SELECT d.request_id INTO used_by FROM dukpt_counters AS d
     WHERE d.pin_pad = p_pin_pad AND d.counter = p_counter;
    IF FOUND THEN
        RETURN used_by = p_request_id;
    END IF;
    SELECT max(d.counter) INTO highest FROM dukpt_counters AS d WHERE d.pin_pad = p_pin_pad;
    IF highest IS NOT NULL AND p_counter <= highest - p_window THEN
        RETURN false;
    END IF;
    INSERT INTO dukpt_counters (pin_pad, counter, request_id) VALUES (p_pin_pad, p_counter, p_request_id);
    DELETE FROM dukpt_counters AS d
     WHERE d.pin_pad = p_pin_pad AND d.counter <= greatest(highest, p_counter) - p_window;
    RETURN true;
END;
$$;
