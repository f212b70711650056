# hello.py: the smallest Bento function. main()'s return value is sent to the
# client as one message.
#
#   bento submit examples/hello.py --name hello
#   bento run hello world          # prints: hello, world!
#
# Arguments are decoded as JSON where they parse, so `bento run hello 42`
# passes the number 42 and `bento run hello '"42"'` the string "42".


def main(name="world"):
    return f"hello, {name}!"
