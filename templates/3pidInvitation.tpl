Date: __date__
From: __from__
To: __to__
Message-ID: __messageid__
Subject: __inviter_name__ invited you to a Matrix room
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="__multipart_boundary__"

--__multipart_boundary__
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Hello,

__inviter_name__ invited you to join the room "__room_name__" on Matrix.

To join, create a Matrix account (or sign in) with this email address and open:

__link__

--__multipart_boundary__
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 8bit

<!DOCTYPE html>
<html>
<body>
<p>Hello,</p>
<p><b>__inviter_name__</b> invited you to join the room <b>__room_name__</b> on Matrix.</p>
<p>To join, create a Matrix account (or sign in) with this email address and
<a href="__link__">open the room</a>.</p>
</body>
</html>

--__multipart_boundary__--
