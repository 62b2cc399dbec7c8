Date: __date__
From: __from__
To: __to__
Message-ID: __messageid__
Subject: Confirm your email address for Matrix
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="__multipart_boundary__"

--__multipart_boundary__
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Hello,

We have received a request to use this email address with a Matrix account.
If this was you, please open the link below to confirm your address:

__link__

If your client asks for a code, the code is: __token__

If this was not you, you can safely ignore this email.

--__multipart_boundary__
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 8bit

<!DOCTYPE html>
<html>
<body>
<p>Hello,</p>
<p>We have received a request to use this email address with a Matrix account.
If this was you, please <a href="__link__">confirm your address</a>.</p>
<p>If your client asks for a code, the code is: <code>__token__</code></p>
<p>If this was not you, you can safely ignore this email.</p>
</body>
</html>

--__multipart_boundary__--
