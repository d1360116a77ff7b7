package fat

import (
	"strings"
	"unicode/utf16"
)

// cp850High maps bytes 0x80..0xFF of code page 850, the OEM code page
// mkfs.fat writes labels in by default.
const cp850High = "ÇüéâäàåçêëèïîìÄÅ" +
	"ÉæÆôöòûùÿÖÜø£Ø×ƒ" +
	"áíóúñÑªº¿®¬½¼¡«»" +
	"░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐" +
	"└┴┬├─┼ãÃ╚╔╩╦╠═╬¤" +
	"ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀" +
	"ÓßÔÒõÕµþÞÚÛÙýÝ¯´" +
	"\u00ad±‗¾¶§÷¸°¨·¹³²■\u00a0"

var cp850Runes = []rune(cp850High)

// decodeLabel turns an 11-byte FAT label into a string, trailing spaces
// removed.
func decodeLabel(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c < 0x20:
			// Control bytes are not valid in labels; keep the text readable.
			sb.WriteRune('?')
		case c < 0x80:
			sb.WriteByte(c)
		default:
			sb.WriteRune(cp850Runes[c-0x80])
		}
	}
	return strings.TrimRight(sb.String(), " ")
}

// decodeUTF16Label decodes an exFAT label (UTF-16LE code units).
func decodeUTF16Label(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le16(b[2*i:])
	}
	return strings.TrimRight(string(utf16.Decode(u)), " \x00")
}
