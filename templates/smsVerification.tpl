Your Matrix validation code is __token__
