/*
 * dataplat_mask: the display masks and keyed tokens of dataplat's policies in C.
 *
 * The same rules as the SQL functions in dataplat/policy/masks.py (FUNCTIONS_SQL) and
 * the Python reference there; the policy views call these through the SQL wrappers in
 * schema dataplat_policy when the extension is installed. One pass and one allocation
 * per value instead of the ten or so built-in calls the SQL bodies make per row.
 *
 * Characters are counted in the server encoding (pg_mblen), never bytes, so a masked
 * multibyte name keeps whole characters. Tokens hash the value's UTF-8 bytes, as the
 * SQL version's convert_to(v, 'UTF8') does, with the HMAC pads the views pass in.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#if PG_VERSION_NUM < 140000
#error "dataplat_mask needs PostgreSQL 14 or later (pg_cryptohash)"
#endif
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(dataplat_mask_keep);
PG_FUNCTION_INFO_V1(dataplat_mask_email);
PG_FUNCTION_INFO_V1(dataplat_mask_token);
PG_FUNCTION_INFO_V1(dataplat_mask_hash);

/* Byte offset of the character after the first `chars` characters of s[0..len). */
static int
char_offset(const char *s, int len, int chars)
{
	int			off = 0;

	while (chars-- > 0 && off < len)
		off += pg_mblen(s + off);
	return off > len ? len : off;
}

static text *
stars(int n)
{
	text	   *out = (text *) palloc(VARHDRSZ + n);

	SET_VARSIZE(out, VARHDRSZ + n);
	memset(VARDATA(out), '*', n);
	return out;
}

/* mask_keep(v, keep_first, keep_last, min_hidden): keep the first/last characters, one
 * '*' per hidden character; all stars when fewer than max(min_hidden, 1) would be hidden. */
Datum
dataplat_mask_keep(PG_FUNCTION_ARGS)
{
	text	   *v = PG_GETARG_TEXT_PP(0);
	int32		keep_first = PG_GETARG_INT32(1);
	int32		keep_last = PG_GETARG_INT32(2);
	int32		min_hidden = PG_GETARG_INT32(3);
	const char *s = VARDATA_ANY(v);
	int			len = VARSIZE_ANY_EXHDR(v);
	int			n = pg_mbstrlen_with_len(s, len);
	int			hidden = n - keep_first - keep_last;
	int			head,
				tail_start,
				tail;
	text	   *out;
	char	   *p;

	if (keep_first < 0 || keep_last < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("mask_keep: keep_first and keep_last must not be negative")));
	if (hidden < (min_hidden > 1 ? min_hidden : 1))
		PG_RETURN_TEXT_P(stars(n));
	head = char_offset(s, len, keep_first);
	tail_start = char_offset(s, len, n - keep_last);
	tail = len - tail_start;
	out = (text *) palloc(VARHDRSZ + head + hidden + tail);
	SET_VARSIZE(out, VARHDRSZ + head + hidden + tail);
	p = VARDATA(out);
	memcpy(p, s, head);
	memset(p + head, '*', hidden);
	memcpy(p + head + hidden, s + tail_start, tail);
	PG_RETURN_TEXT_P(out);
}

/* mask_email(v): the first character, '***', and everything from the first '@' on;
 * '***' when there is no '@' after the first character. */
Datum
dataplat_mask_email(PG_FUNCTION_ARGS)
{
	text	   *v = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(v);
	int			len = VARSIZE_ANY_EXHDR(v);
	int			off = 0;
	int			at = -1;
	int			first;
	int			chars = 0;
	text	   *out;
	char	   *p;

	while (off < len)
	{
		if (s[off] == '@')
		{
			at = off;
			break;
		}
		off += pg_mblen(s + off);
		chars++;
	}
	if (at < 0 || chars < 1)
		PG_RETURN_TEXT_P(cstring_to_text("***"));
	first = pg_mblen(s);
	out = (text *) palloc(VARHDRSZ + first + 3 + (len - at));
	SET_VARSIZE(out, VARHDRSZ + first + 3 + (len - at));
	p = VARDATA(out);
	memcpy(p, s, first);
	memcpy(p + first, "***", 3);
	memcpy(p + first + 3, s + at, len - at);
	PG_RETURN_TEXT_P(out);
}

static void
sha256_parts(const uint8 *a, size_t alen, const uint8 *b, size_t blen, uint8 *dest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, a, alen) < 0 ||
		pg_cryptohash_update(ctx, b, blen) < 0 ||
#if PG_VERSION_NUM >= 150000
		pg_cryptohash_final(ctx, dest, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "dataplat_mask: could not compute SHA-256: %s", pg_cryptohash_error(ctx));
#else
		pg_cryptohash_final(ctx, dest) < 0)
		elog(ERROR, "dataplat_mask: could not compute SHA-256");
#endif
	pg_cryptohash_free(ctx);
}

/* HMAC-SHA256 of v's UTF-8 bytes from the padded keys (inner then outer pad, 64 bytes
 * each, in one value), as hex: the prefix and the first `hex` digits. */
static text *
hmac_hex(FunctionCallInfo fcinfo, const char *prefix, int hex)
{
	bytea	   *pads = PG_GETARG_BYTEA_PP(0);
	text	   *v = PG_GETARG_TEXT_PP(1);
	const uint8 *ipad = (const uint8 *) VARDATA_ANY(pads);
	int			padlen = VARSIZE_ANY_EXHDR(pads) / 2;
	int			len = VARSIZE_ANY_EXHDR(v);
	const char *utf8 = pg_server_to_any(VARDATA_ANY(v), len, PG_UTF8);
	uint8		inner[PG_SHA256_DIGEST_LENGTH];
	uint8		outer[PG_SHA256_DIGEST_LENGTH];
	static const char digits[] = "0123456789abcdef";
	int			plen = strlen(prefix);
	text	   *out;
	char	   *p;

	if (VARSIZE_ANY_EXHDR(pads) != 2 * PG_SHA256_BLOCK_LENGTH)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("dataplat_mask: the key pads must be %d bytes", 2 * PG_SHA256_BLOCK_LENGTH)));
	if (utf8 != VARDATA_ANY(v))
		len = strlen(utf8);
	sha256_parts(ipad, padlen, (const uint8 *) utf8, len, inner);
	sha256_parts(ipad + padlen, padlen, inner, sizeof(inner), outer);
	out = (text *) palloc(VARHDRSZ + plen + hex);
	SET_VARSIZE(out, VARHDRSZ + plen + hex);
	p = VARDATA(out);
	memcpy(p, prefix, plen);
	for (int i = 0; i < hex; i++)
		p[plen + i] = digits[(outer[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
	return out;
}

/* token(pads, v): 'tk_' and 24 hex digits of HMAC-SHA256(v). */
Datum
dataplat_mask_token(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(hmac_hex(fcinfo, "tk_", 24));
}

/* hash(pads, v): the 64 hex digits of HMAC-SHA256(v). */
Datum
dataplat_mask_hash(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(hmac_hex(fcinfo, "", 64));
}
