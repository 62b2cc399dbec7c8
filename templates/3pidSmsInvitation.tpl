__inviter_name__ invited you to a Matrix room: __link__
