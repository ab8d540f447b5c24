# Writes OUT, a C file defining console_page_html[] (the bytes of IN, NUL-terminated) and
# console_page_html_len: the console page compiled into the binary, no runtime file.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from broker/console/page.html by embed.cmake. */\n"
  "#include <stddef.h>\n"
  "const char console_page_html[] = {\n${body}0x00};\n"
  "const size_t console_page_html_len = ${bytes};\n")
