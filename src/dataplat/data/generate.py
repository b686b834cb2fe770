"""The deterministic synthetic bank, generated with vectorised numpy and pyarrow.

The customers are cut into fixed blocks of :data:`BLOCK_CUSTOMERS`. Each block's rows
of every table come from random generators seeded with ``(seed, table, block)`` through
:class:`numpy.random.SeedSequence`, and every identifier is computed from the block or
the customer, never from a running counter. So the same ``(sf, seed)`` gives the same
bytes whatever the chunk size (a chunk is a whole number of blocks) and whatever order
the chunks are produced in (:func:`generate_chunk` makes any one of them alone).

Counts at scale factor 1: 1,000,000 customers, ~2,000,000 accounts, ~20,000,000
transactions over the 30 days before :data:`AS_OF`; every fact table scales linearly.
Branches scale too (500 per SF, at least 5); products and campaigns are fixed catalogues.

Also the pure-Python validators :func:`id_number_valid`, :func:`luhn_valid` and
:func:`mobile_valid`, which the policy checks reuse as detectors.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataplat.data.schema import MONEY_PRECISION, MONEY_SCALE, TABLES, arrow_schema

GENERATOR_VERSION = "1"
"""Bumped whenever the same (sf, seed) would produce different data."""

AS_OF = dt.date(2026, 11, 21)
"""The business date of the data set: transactions cover the 30 days before it."""

DEFAULT_SEED = 20261121
CUSTOMERS_PER_SF = 1_000_000
BRANCHES_PER_SF = 500
MIN_BRANCHES = 5
MAX_CUSTOMERS = 100_000_000
"""Unique mobiles and ID numbers are guaranteed up to here (SF 100)."""
BLOCK_CUSTOMERS = 25_000
"""Customers per generation block: the unit of determinism (never change lightly)."""
DEFAULT_CHUNK_CUSTOMERS = 100_000
WINDOW_DAYS = 30
TXN_ID_STRIDE = 10**9
CONTACT_ID_STRIDE = 10**8

_TZ = dt.timezone(dt.timedelta(hours=8))
_DAY_US = 86_400 * 1_000_000
_EPOCH = dt.date(1970, 1, 1)

# --- reference lists -----------------------------------------------------------------

# (surname, pinyin)
_SURNAMES: tuple[tuple[str, str], ...] = tuple(
    (s.split(":")[0], s.split(":")[1])
    for s in (
        "王:wang 李:li 张:zhang 刘:liu 陈:chen 杨:yang 黄:huang 赵:zhao 吴:wu 周:zhou 徐:xu 孙:sun "
        "马:ma 朱:zhu 胡:hu 郭:guo 何:he 高:gao 林:lin 罗:luo 郑:zheng 梁:liang 谢:xie 宋:song 唐:tang "
        "许:xu 韩:han 冯:feng 邓:deng 曹:cao 彭:peng 曾:zeng 肖:xiao 田:tian 董:dong 袁:yuan 潘:pan "
        "于:yu 蒋:jiang 蔡:cai 余:yu 杜:du 叶:ye 程:cheng 苏:su 魏:wei 吕:lv 丁:ding 任:ren 沈:shen "
        "姚:yao 卢:lu 姜:jiang 崔:cui 钟:zhong 谭:tan 陆:lu 汪:wang 范:fan 金:jin 石:shi 廖:liao 贾:jia "
        "夏:xia 韦:wei 付:fu 方:fang 白:bai 邹:zou 孟:meng 熊:xiong 秦:qin 邱:qiu 江:jiang 尹:yin "
        "薛:xue 闫:yan 段:duan 雷:lei 侯:hou 龙:long 史:shi 陶:tao 黎:li 贺:he 顾:gu 毛:mao 郝:hao "
        "龚:gong 邵:shao 万:wan 钱:qian 严:yan 欧阳:ouyang 司马:sima 诸葛:zhuge"
    ).split()
)
_MALE_GIVEN: tuple[tuple[str, str], ...] = tuple(
    (s.split(":")[0], s.split(":")[1])
    for s in (
        "伟:wei 强:qiang 磊:lei 军:jun 勇:yong 杰:jie 涛:tao 明:ming 超:chao 鹏:peng 浩:hao 宇:yu "
        "俊:jun 建:jian 国:guo 斌:bin 辉:hui 刚:gang 波:bo 峰:feng 志:zhi 海:hai 平:ping 东:dong "
        "文:wen 华:hua 飞:fei 龙:long 林:lin 博:bo 晨:chen 子:zi 轩:xuan 睿:rui 泽:ze 宏:hong 亮:liang "
        "凯:kai 诚:cheng 嘉:jia 毅:yi 航:hang 昊:hao 然:ran 铭:ming 翔:xiang"
    ).split()
)
_FEMALE_GIVEN: tuple[tuple[str, str], ...] = tuple(
    (s.split(":")[0], s.split(":")[1])
    for s in (
        "芳:fang 娜:na 敏:min 静:jing 丽:li 艳:yan 娟:juan 霞:xia 秀:xiu 玲:ling 婷:ting 雪:xue 慧:hui "
        "颖:ying 琳:lin 欣:xin 怡:yi 佳:jia 倩:qian 梅:mei 兰:lan 燕:yan 萍:ping 红:hong 莉:li 晶:jing "
        "瑶:yao 雨:yu 涵:han 诗:shi 梦:meng 思:si 悦:yue 琪:qi 璐:lu 月:yue 晓:xiao 楠:nan 冰:bing "
        "丹:dan 婉:wan 蕾:lei 薇:wei 洁:jie"
    ).split()
)
# (province, city, district, administrative division code)
_DISTRICTS: tuple[tuple[str, str, str, str], ...] = (
    ("北京市", "北京市", "东城区", "110101"),
    ("北京市", "北京市", "西城区", "110102"),
    ("北京市", "北京市", "朝阳区", "110105"),
    ("北京市", "北京市", "丰台区", "110106"),
    ("北京市", "北京市", "海淀区", "110108"),
    ("天津市", "天津市", "和平区", "120101"),
    ("天津市", "天津市", "南开区", "120104"),
    ("上海市", "上海市", "黄浦区", "310101"),
    ("上海市", "上海市", "徐汇区", "310104"),
    ("上海市", "上海市", "长宁区", "310105"),
    ("上海市", "上海市", "静安区", "310106"),
    ("上海市", "上海市", "浦东新区", "310115"),
    ("重庆市", "重庆市", "渝中区", "500103"),
    ("重庆市", "重庆市", "江北区", "500105"),
    ("广东省", "广州市", "越秀区", "440104"),
    ("广东省", "广州市", "海珠区", "440105"),
    ("广东省", "广州市", "天河区", "440106"),
    ("广东省", "深圳市", "罗湖区", "440303"),
    ("广东省", "深圳市", "福田区", "440304"),
    ("广东省", "深圳市", "南山区", "440305"),
    ("浙江省", "杭州市", "上城区", "330102"),
    ("浙江省", "杭州市", "西湖区", "330106"),
    ("浙江省", "宁波市", "海曙区", "330203"),
    ("江苏省", "南京市", "玄武区", "320102"),
    ("江苏省", "南京市", "秦淮区", "320104"),
    ("江苏省", "苏州市", "姑苏区", "320508"),
    ("四川省", "成都市", "锦江区", "510104"),
    ("四川省", "成都市", "武侯区", "510107"),
    ("湖北省", "武汉市", "江岸区", "420102"),
    ("湖北省", "武汉市", "武昌区", "420106"),
    ("陕西省", "西安市", "碑林区", "610103"),
    ("陕西省", "西安市", "雁塔区", "610113"),
    ("山东省", "济南市", "历下区", "370102"),
    ("山东省", "青岛市", "市南区", "370202"),
    ("福建省", "厦门市", "思明区", "350203"),
    ("福建省", "福州市", "鼓楼区", "350102"),
    ("湖南省", "长沙市", "芙蓉区", "430102"),
    ("湖南省", "长沙市", "岳麓区", "430104"),
    ("辽宁省", "沈阳市", "和平区", "210102"),
    ("辽宁省", "大连市", "中山区", "210202"),
    ("河南省", "郑州市", "金水区", "410105"),
    ("安徽省", "合肥市", "蜀山区", "340104"),
)
_STREETS: tuple[str, ...] = tuple(
    "人民路 中山路 解放路 建设路 和平路 新华路 胜利路 长江路 黄河路 朝阳路 文化路 青年路 光明路 东风路 "
    "民主路 复兴路 南京路 北京路 环城路 滨江路 学院路 科技路 春晖路 花园路 幸福路 建国路 振兴路 工业路 "
    "湖滨路 世纪大道 金融街 府前街".split()
)
_EMAIL_DOMAINS = (
    "qq.com",
    "163.com",
    "126.com",
    "gmail.com",
    "sina.com",
    "outlook.com",
    "139.com",
    "foxmail.com",
)
_EMAIL_P = (0.38, 0.24, 0.1, 0.05, 0.06, 0.06, 0.06, 0.05)
MOBILE_PREFIXES: tuple[str, ...] = tuple(
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 "
    "170 173 175 176 177 178 180 181 182 183 184 185 186 187 188 189 191 195 198 199".split()
)
_VALID_MOBILE_PREFIXES = frozenset(
    [f"13{d}" for d in range(10)]
    + ["145", "146", "147", "148", "149"]
    + [f"15{d}" for d in range(10) if d != 4]
    + ["162", "165", "166", "167"]
    + [f"17{d}" for d in range(9)]
    + [f"18{d}" for d in range(10)]
    + [f"19{d}" for d in range(10) if d != 4]
)
OTHER_BANKS: tuple[str, ...] = (
    "中国工商银行", "中国建设银行", "中国农业银行", "中国银行", "交通银行", "招商银行", "中国邮政储蓄银行",
    "兴业银行", "浦发银行", "中信银行", "民生银行", "光大银行", "平安银行", "华夏银行", "广发银行",
)  # fmt: skip
# UnionPay debit BINs (16-digit, 19-digit)
_BINS_16 = (622588, 621700, 625802)
_BINS_19 = (621226, 622202, 622848, 623668)

SEGMENTS = ("mass", "affluent", "private")
_SEGMENT_P = (0.85, 0.13, 0.02)
_SEGMENT_WEALTH = np.array([1.0, 15.0, 150.0])
_SEGMENT_SPEND = np.array([1.0, 2.5, 6.0])
ACCOUNT_TYPES = ("current", "savings", "time_deposit")
_TYPE_BALANCE = np.array([6_000.0, 20_000.0, 50_000.0])

TXN_KINDS = (
    "payroll_credit", "large_inflow", "transfer_in", "refund", "interest_credit",
    "card_spend", "transfer_out", "transfer_out_other_bank", "bill_payment", "atm_withdrawal", "fee",
)  # fmt: skip
_N_CREDIT_KINDS = 5
# probability of each kind (except payroll, generated apart) per account type
_KIND_P = np.array(
    [
        # payroll large_in  tr_in  refund interest spend  tr_out tr_other bill   atm    fee
        [0.0, 0.02, 0.10, 0.05, 0.02, 0.45, 0.08, 0.10, 0.10, 0.05, 0.03],  # current
        [0.0, 0.05, 0.40, 0.00, 0.15, 0.00, 0.25, 0.15, 0.00, 0.00, 0.00],  # savings
        [0.0, 0.10, 0.20, 0.00, 0.70, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # time_deposit
    ]
)
_TXNS_PER_ACCOUNT = np.array([18.5, 3.0, 1.0])  # mean other-than-payroll transactions in the window
# median amount (CNY) and log-sigma per kind
_KIND_MEDIAN = np.array([7_500, 30_000, 2_000, 150, 30, 120, 1_500, 5_000, 300, 800, 5], dtype=np.float64)
_KIND_SIGMA = np.array([0.4, 1.0, 1.2, 0.9, 1.0, 1.1, 1.2, 1.3, 0.9, 0.6, 0.7])
LARGE_INFLOW_MIN = 50_000
CHANNELS = ("mobile_app", "online_banking", "branch", "atm", "pos", "batch", "system")
_CHANNEL_P = np.array(
    [
        # app   online branch atm   pos   batch system
        [0.00, 0.00, 0.00, 0.00, 0.00, 1.00, 0.00],  # payroll_credit
        [0.50, 0.20, 0.30, 0.00, 0.00, 0.00, 0.00],  # large_inflow
        [0.70, 0.20, 0.10, 0.00, 0.00, 0.00, 0.00],  # transfer_in
        [0.00, 0.50, 0.00, 0.00, 0.50, 0.00, 0.00],  # refund
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00],  # interest_credit
        [0.15, 0.25, 0.00, 0.00, 0.60, 0.00, 0.00],  # card_spend
        [0.75, 0.15, 0.07, 0.03, 0.00, 0.00, 0.00],  # transfer_out
        [0.75, 0.17, 0.08, 0.00, 0.00, 0.00, 0.00],  # transfer_out_other_bank
        [0.80, 0.20, 0.00, 0.00, 0.00, 0.00, 0.00],  # bill_payment
        [0.00, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00],  # atm_withdrawal
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00],  # fee
    ]
)
# chance that the counterparty is another bank (else internal, NULL)
_OTHER_BANK_P = np.array([0.5, 0.6, 0.6, 0, 0, 0, 0, 1.0, 0, 0, 0])
CONTACT_CHANNELS = ("app_push", "sms", "rm_task")
CONTACT_OUTCOMES = (
    "delivered",
    "opened",
    "clicked",
    "converted",
    "failed",
    "contacted",
    "declined",
    "no_answer",
)
_OUTCOME_P = np.array(
    [
        [0.50, 0.25, 0.12, 0.03, 0.10, 0.00, 0.00, 0.00],  # app_push
        [0.80, 0.00, 0.08, 0.02, 0.10, 0.00, 0.00, 0.00],  # sms
        [0.00, 0.00, 0.00, 0.12, 0.00, 0.48, 0.25, 0.15],  # rm_task
    ]
)

# --- the fixed catalogues ---------------------------------------------------------------

# code, name, category, risk, term_days (0 = open-ended), expected rate %, min amount (CNY)
_PRODUCTS: tuple[tuple[str, str, str, int, int, float, int], ...] = (
    ("DEP-N7D", "七天通知存款", "deposit", 1, 7, 1.00, 50_000),
    ("DEP-3M", "三个月整存整取", "deposit", 1, 91, 1.05, 50),
    ("DEP-6M", "六个月整存整取", "deposit", 1, 182, 1.25, 50),
    ("DEP-1Y", "一年期整存整取", "deposit", 1, 365, 1.35, 50),
    ("DEP-2Y", "二年期整存整取", "deposit", 1, 730, 1.45, 50),
    ("DEP-3Y", "三年期整存整取", "deposit", 1, 1095, 1.75, 50),
    ("CD-1Y", "一年期大额存单", "deposit", 1, 365, 1.55, 200_000),
    ("CD-3Y", "三年期大额存单", "deposit", 1, 1095, 1.90, 200_000),
    ("WM-S07", "稳盈七天理财", "wealth_management", 2, 7, 1.90, 10_000),
    ("WM-S30", "稳盈30天理财", "wealth_management", 2, 30, 2.10, 10_000),
    ("WM-S90", "稳盈90天理财", "wealth_management", 2, 91, 2.40, 10_000),
    ("WM-S180", "稳盈180天理财", "wealth_management", 2, 182, 2.60, 10_000),
    ("WM-S365", "稳盈一年理财", "wealth_management", 2, 365, 2.85, 10_000),
    ("WM-G90", "进取90天理财", "wealth_management", 3, 91, 3.20, 50_000),
    ("WM-G365", "进取一年理财", "wealth_management", 3, 365, 3.80, 50_000),
    ("WM-P180", "私享180天理财", "wealth_management", 4, 182, 4.20, 1_000_000),
    ("FND-MMF", "货币市场基金", "fund", 1, 0, 1.60, 1),
    ("FND-BOND", "纯债债券基金", "fund", 2, 0, 3.00, 10),
    ("FND-MIX", "均衡混合基金", "fund", 3, 0, 6.00, 10),
    ("FND-IDX", "沪深300指数基金", "fund", 4, 0, 7.00, 10),
    ("FND-EQ", "成长股票基金", "fund", 4, 0, 8.00, 10),
    ("FND-QDII", "全球科技QDII基金", "fund", 5, 0, 9.00, 100),
    ("INS-ANN5", "五年期年金保险", "insurance", 1, 1825, 2.50, 10_000),
    ("INS-END10", "十年期两全保险", "insurance", 2, 3650, 2.75, 20_000),
    ("INS-WL", "增额终身寿险", "insurance", 2, 0, 3.00, 10_000),
    ("INS-UL", "万能账户保险", "insurance", 3, 0, 3.50, 5_000),
)
# code, name, trigger, target segment, product code, channel, starts (days before as_of),
# ends (days after as_of; negative = ended)
_CAMPAIGNS: tuple[tuple[str, str, str, str | None, str | None, str, int, int], ...] = (
    ("RT-PAYROLL-WM", "工资到账理财推荐", "payroll_credit", "mass", "WM-S30", "app_push", 120, 60),
    ("RT-PAYROLL-SIP", "工资到账基金定投", "payroll_credit", "affluent", "FND-IDX", "app_push", 90, 90),
    ("RT-INFLOW-CD", "大额资金入账存单推荐", "large_inflow", None, "CD-1Y", "rm_task", 150, 30),
    ("RT-MATURITY", "产品到期续作提醒", "product_maturity", None, "WM-S90", "sms", 200, 120),
    ("RT-OUTFLOW", "跨行转出挽留", "transfer_out_other_bank", "affluent", "DEP-1Y", "rm_task", 100, 60),
    ("NT-AFFLUENT-FUND", "财富客户基金配置", "nightly", "affluent", "FND-MIX", "app_push", 60, 45),
    ("NT-PRIVATE-INS", "私行客户保险规划", "nightly", "private", "INS-END10", "rm_task", 75, 90),
    ("NT-NEW-WELCOME", "新客礼遇货币基金", "nightly", None, "FND-MMF", "app_push", 180, 180),
    ("NT-CHURN-WINBACK", "流失预警挽回", "nightly", None, None, "sms", 90, 30),
    ("NT-SPEND-CASHBACK", "刷卡返现活动", "nightly", "mass", None, "app_push", 70, -10),
)


@dataclass(frozen=True)
class Plan:
    """How many customers, branches and blocks a scale factor means."""

    sf: float
    customers: int
    branches: int
    blocks: int

    @classmethod
    def of(cls, sf: float) -> Plan:
        """The plan for scale factor ``sf`` (> 0)."""
        if not (sf > 0 and math.isfinite(sf)):
            raise ValueError(f"scale factor must be a positive number, got {sf!r}")
        customers = max(1, round(CUSTOMERS_PER_SF * sf))
        if customers > MAX_CUSTOMERS:
            raise ValueError(
                f"scale factor {sf} is beyond the largest supported, {MAX_CUSTOMERS // CUSTOMERS_PER_SF}"
            )
        branches = max(MIN_BRANCHES, round(BRANCHES_PER_SF * sf))
        return cls(sf, customers, branches, -(-customers // BLOCK_CUSTOMERS))

    def chunks(self, chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS) -> int:
        """Number of chunks of :func:`generate` for ``chunk_customers``."""
        return -(-self.blocks // _blocks_per_chunk(chunk_customers))

    def expected_rows(self) -> dict[str, int]:
        """Approximate row counts per table (for progress bars; the generator gives exact ones)."""
        c = self.customers
        return {
            "branches": self.branches,
            "customers": c,
            "accounts": 2 * c,
            "cards": round(1.0 * c),
            "transactions": 20 * c,
            "products": len(_PRODUCTS),
            "holdings": round(1.28 * c),
            "campaigns": len(_CAMPAIGNS),
            "contact_history": round(1.45 * c),
            "decisions": 0,
        }


def _blocks_per_chunk(chunk_customers: int) -> int:
    if chunk_customers <= 0:
        raise ValueError("chunk_customers must be positive")
    return max(1, -(-chunk_customers // BLOCK_CUSTOMERS))


# --- helpers --------------------------------------------------------------------------

_TABLE_CODES = {t.name: zlib.crc32(t.name.encode()) for t in TABLES}


def _rng(seed: int, table: str, block: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _TABLE_CODES[table], block])))


def _days(d: dt.date) -> int:
    return (d - _EPOCH).days


def _money(cents: np.ndarray) -> pa.Array:
    """Exact decimal128(18,2) from integer cents (no float rounding on the way)."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(
        pa.decimal128(MONEY_PRECISION, MONEY_SCALE), len(cents), [None, pa.py_buffer(words)]
    )


def _cents(rng: np.random.Generator, median: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    return np.round(median * np.exp(rng.standard_normal(len(median)) * sigma) * 100).astype(np.int64)


def _date(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32), type=pa.date32())


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), type=pa.timestamp("us", tz="UTC"))


def _pick(values: Sequence[str] | pa.Array, idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    return arr.take(pa.array(idx, mask=mask))


def _choice_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each i, an index drawn from the distribution ``probs[rows[i]]``."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows]).sum(axis=1).astype(np.int64)


def _str(ints: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(ints), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _digits_check_id(first17: np.ndarray) -> np.ndarray:
    weights = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
    total = np.zeros(len(first17), dtype=np.int64)
    for i in range(17):
        total += (first17 // 10 ** (16 - i)) % 10 * weights[i]
    return total % 11


def _luhn_check_digits(payload: np.ndarray, length: int) -> np.ndarray:
    """Luhn check digit for integer payloads of ``length`` digits (vectorised)."""
    total = np.zeros(len(payload), dtype=np.int64)
    x = payload.copy()
    for k in range(length):
        d = x % 10
        x //= 10
        if k % 2 == 0:
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        total += d
    return (10 - total % 10) % 10


def _keys(seed: int, purpose: str) -> np.ndarray:
    return np.random.SeedSequence([seed, zlib.crc32(purpose.encode())]).generate_state(4, dtype=np.uint64)


def _feistel(x: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = x >> shift, x & mask
    for k in keys:
        f = right * np.uint64(0x9E3779B97F4A7C15) + k
        f ^= f >> np.uint64(29)
        f *= np.uint64(0xBF58476D1CE4E5B9)
        f ^= f >> np.uint64(32)
        left, right = right, left ^ (f & mask)
    return (left << shift) | right


def _permute(i: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed pseudo-random bijection of ``[0, n)``: a Feistel network with cycle walking.

    Distinct inputs give distinct outputs, so values derived from it (ID numbers, mobiles,
    card numbers) are unique across blocks without any shared state.
    """
    half = max(1, -(-(n - 1).bit_length() // 2))
    x = np.asarray(i, dtype=np.uint64).copy()
    if len(x) and int(x.max()) >= n:
        raise ValueError(f"permutation input beyond its domain [0, {n})")
    todo = np.arange(len(x))
    while todo.size:
        y = _feistel(x[todo], half, keys)
        x[todo] = y
        todo = todo[y >= np.uint64(n)]
    return x.astype(np.int64)


_AGE_MIN_DAYS = int(18 * 365.25) + 91
_AGE_MAX_DAYS = int(85 * 365.25)
_ID_SLOTS_PER_DAY = len(_DISTRICTS) * 500  # (region, sequence pair) per birth day and gender
_ID_CAPACITY = 200_000_000


@lru_cache(maxsize=1)
def _birth_slots() -> np.ndarray:
    """Cumulative ID slots per age in days (a normal around 42 years, sd 13): slot ``s``
    belongs to age ``_AGE_MIN_DAYS + searchsorted(...)``; no day holds more slots than
    there are (region, sequence) pairs, so no two customers share an ID number."""
    ages = np.arange(_AGE_MIN_DAYS, _AGE_MAX_DAYS + 1)
    pdf = np.exp(-0.5 * ((ages - 42 * 365.25) / (13 * 365.25)) ** 2)
    cap = np.floor(pdf / pdf.sum() * _ID_CAPACITY).astype(np.int64)
    assert cap.max() <= _ID_SLOTS_PER_DAY
    return np.concatenate([[0], np.cumsum(cap)])


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    year = months.astype(np.int64) // 12 + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


# --- catalogues -----------------------------------------------------------------------


def _branches(plan: Plan, seed: int, as_of: dt.date) -> pa.RecordBatch:
    rng = _rng(seed, "branches")
    n = plan.branches
    ids = np.arange(1, n + 1)
    dist = (ids - 1) % len(_DISTRICTS)
    ordinal = (ids - 1) // len(_DISTRICTS) + 1
    opened = _days(dt.date(1990, 1, 1)) + rng.integers(0, _days(as_of) - _days(dt.date(1990, 1, 1)) - 365, n)
    prefix = pa.array([(p if p != c else "") + c + d for p, c, d, _ in _DISTRICTS])
    name = _join(_pick(prefix, dist), "第", _str(ordinal), "支行")
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids, pa.int32()),
            name,
            _pick([x[0] for x in _DISTRICTS], dist),
            _pick([x[1] for x in _DISTRICTS], dist),
            _pick([x[2] for x in _DISTRICTS], dist),
            _pick([x[3] for x in _DISTRICTS], dist),
            _date(opened),
        ],
        schema=arrow_schema("branches"),
    )


def _products(seed: int, as_of: dt.date) -> pa.RecordBatch:
    rng = _rng(seed, "products")
    n = len(_PRODUCTS)
    launched = _days(as_of) - rng.integers(30, 3000, n)
    terms = [p[4] for p in _PRODUCTS]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(1, n + 1), pa.int32()),
            pa.array([p[0] for p in _PRODUCTS]),
            pa.array([p[1] for p in _PRODUCTS]),
            pa.array([p[2] for p in _PRODUCTS]),
            pa.array([p[3] for p in _PRODUCTS], pa.int32()),
            pa.array([t or None for t in terms], pa.int32()),
            pa.array([p[5] for p in _PRODUCTS], pa.float64()),
            _money(np.array([p[6] * 100 for p in _PRODUCTS])),
            pa.array(["CNY"] * n),
            _date(launched),
            pa.array(["on_sale"] * n),
        ],
        schema=arrow_schema("products"),
    )


def _campaigns(seed: int, as_of: dt.date) -> pa.RecordBatch:
    codes = {p[0]: i + 1 for i, p in enumerate(_PRODUCTS)}
    a = _days(as_of)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(1, len(_CAMPAIGNS) + 1), pa.int32()),
            pa.array([c[0] for c in _CAMPAIGNS]),
            pa.array([c[1] for c in _CAMPAIGNS]),
            pa.array([c[2] for c in _CAMPAIGNS]),
            pa.array([c[3] for c in _CAMPAIGNS], pa.string()),
            pa.array([codes[c[4]] if c[4] else None for c in _CAMPAIGNS], pa.int32()),
            pa.array([c[5] for c in _CAMPAIGNS]),
            _date(np.array([a - c[6] for c in _CAMPAIGNS])),
            _date(np.array([a + c[7] for c in _CAMPAIGNS])),
            pa.array(["active" if c[7] >= 0 else "ended" for c in _CAMPAIGNS]),
        ],
        schema=arrow_schema("campaigns"),
    )


# --- one block --------------------------------------------------------------------------


def _block(plan: Plan, seed: int, block: int, as_of: dt.date) -> dict[str, pa.RecordBatch]:
    """Every fact table's rows for the customers of ``block``."""
    first = block * BLOCK_CUSTOMERS
    n = min(BLOCK_CUSTOMERS, plan.customers - first)
    if n <= 0:
        raise ValueError(f"block {block} is beyond the {plan.blocks} blocks of SF {plan.sf}")
    a = _days(as_of)
    window_end_us = int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=_TZ).timestamp()) * 1_000_000
    window_start_us = window_end_us - WINDOW_DAYS * _DAY_US
    out: dict[str, pa.RecordBatch] = {}

    # customers
    rng = _rng(seed, "customers", block)
    cid = np.arange(first + 1, first + n + 1, dtype=np.int64)
    segment = rng.choice(3, n, p=_SEGMENT_P)
    # (birth date, gender, region, sequence) of the ID number: a keyed bijection of the
    # customer id, so ID numbers are unique across blocks and ages follow _birth_slots()
    slots = _birth_slots()
    x = _permute(cid - 1, 2 * int(slots[-1]), _keys(seed, "id_number"))
    male = (x & 1).astype(bool)
    slot = x >> 1
    age_idx = np.searchsorted(slots, slot, side="right") - 1
    within = slot - slots[age_idx]
    age_days = _AGE_MIN_DAYS + age_idx
    birth_dist = within % len(_DISTRICTS)
    seq3 = within // len(_DISTRICTS) * 2 + male
    birth = a - age_days
    new = rng.random(n) < 0.06
    max_tenure = np.minimum(age_days - int(18 * 365.25), 20 * 365)
    tenure = np.where(new, rng.integers(0, 90, n), 90 + (rng.random(n) * (max_tenure - 90)).astype(np.int64))
    opened = a - tenure
    branch = rng.integers(0, plan.branches, n)
    dist = np.where(rng.random(n) < 0.75, branch % len(_DISTRICTS), rng.integers(0, len(_DISTRICTS), n))
    surname_w = 1.0 / (np.arange(len(_SURNAMES)) + 4.0)
    surname = rng.choice(len(_SURNAMES), n, p=surname_w / surname_w.sum())
    given_pool = np.where(male, 0, 1)
    n_given = np.where(rng.random(n) < 0.3, 1, 2)
    pool_size = np.array([len(_MALE_GIVEN), len(_FEMALE_GIVEN)])[given_pool]
    g1 = (rng.random(n) * pool_size).astype(np.int64)
    g2 = (rng.random(n) * pool_size).astype(np.int64)
    given_chars = pa.array([g[0] for g in _MALE_GIVEN] + [g[0] for g in _FEMALE_GIVEN])
    given_py = pa.array([g[1] for g in _MALE_GIVEN] + [g[1] for g in _FEMALE_GIVEN])
    off = given_pool * len(_MALE_GIVEN)
    second_missing = n_given == 1
    name = _join(
        _pick([s[0] for s in _SURNAMES], surname),
        _pick(given_chars, g1 + off),
        pc.fill_null(_pick(given_chars, g2 + off, mask=second_missing), ""),
    )
    email = _join(
        _pick([s[1] for s in _SURNAMES], surname),
        _pick(given_py, g1 + off),
        pc.fill_null(_pick(given_py, g2 + off, mask=second_missing), ""),
        _str(cid),
        "@",
        _pick(_EMAIL_DOMAINS, rng.choice(len(_EMAIL_DOMAINS), n, p=_EMAIL_P)),
    )
    y, m, d = _ymd(birth)
    area = np.array([int(x[3]) for x in _DISTRICTS], dtype=np.int64)[birth_dist]
    first17 = area * 10**11 + (y * 10_000 + m * 100 + d) * 1_000 + seq3
    id_number = _join(_str(first17), _pick(list("10X98765432"), _digits_check_id(first17)))
    mob_prefix = np.array([int(p) for p in MOBILE_PREFIXES], dtype=np.int64)
    mob_suffix = _permute(cid - 1, 10**8, _keys(seed, "mobile"))  # unique whatever the prefix
    mobile = _str(mob_prefix[rng.integers(0, len(mob_prefix), n)] * 10**8 + mob_suffix)
    prefix = pa.array([(p if p != c else "") + c + dd for p, c, dd, _ in _DISTRICTS])
    address = _join(
        _pick(prefix, dist),
        _pick(_STREETS, rng.integers(0, len(_STREETS), n)),
        _str(rng.integers(1, 999, n)),
        "号",
        _str(rng.integers(1, 40, n)),
        "栋",
        _str(rng.integers(1, 33, n) * 100 + rng.integers(1, 9, n)),
        "室",
    )
    risk = rng.choice(5, n, p=(0.15, 0.35, 0.30, 0.15, 0.05)) + 1
    consent = rng.random(n) < 0.85
    dormant = rng.random(n) < 0.05
    out["customers"] = pa.RecordBatch.from_arrays(
        [
            pa.array(cid),
            name,
            id_number,
            mobile,
            email,
            address,
            _pick([x[1] for x in _DISTRICTS], dist),
            pa.array(branch + 1, pa.int32()),
            _pick(SEGMENTS, segment),
            _date(birth),
            _pick(("F", "M"), male.astype(np.int64)),
            _date(opened),
            pa.array(risk, pa.int32()),
            pa.array(consent),
            _pick(("active", "dormant"), dormant.astype(np.int64)),
        ],
        schema=arrow_schema("customers"),
    )

    # accounts: 1 to 3 per customer (2 on average), the first one is the current account
    rng = _rng(seed, "accounts", block)
    n_acc = 1 + rng.choice(3, n, p=(0.3, 0.4, 0.3))
    acc_cust = np.repeat(np.arange(n), n_acc)
    k = np.arange(len(acc_cust)) - np.repeat(np.cumsum(n_acc) - n_acc, n_acc)
    m_acc = len(acc_cust)
    acc_type = np.where(k == 0, 0, np.where(rng.random(m_acc) < np.where(k == 1, 0.6, 0.4), 1, 2))
    account_id = cid[acc_cust] * 10 + k
    acc_tenure = tenure[acc_cust]
    acc_opened = np.where(k == 0, opened[acc_cust], a - (rng.random(m_acc) * acc_tenure).astype(np.int64))
    u = rng.random(m_acc)
    acc_status = np.where(
        k == 0, np.where(dormant[acc_cust], 1, 0), np.where(u < 0.015, 2, np.where(u < 0.06, 1, 0))
    )
    acc_seg = segment[acc_cust]
    balance = _cents(rng, _SEGMENT_WEALTH[acc_seg] * _TYPE_BALANCE[acc_type], 1.0)
    balance = np.where(acc_status == 2, 0, np.where(acc_status == 1, balance // 50, balance))
    out["accounts"] = pa.RecordBatch.from_arrays(
        [
            pa.array(account_id),
            pa.array(cid[acc_cust]),
            _pick(ACCOUNT_TYPES, acc_type),
            _pick(("CNY",), np.zeros(m_acc, dtype=np.int64)),
            _date(acc_opened),
            _pick(("active", "dormant", "closed"), acc_status),
            _money(balance),
        ],
        schema=arrow_schema("accounts"),
    )

    # cards: a debit card on most current accounts, a second one for some customers
    rng = _rng(seed, "cards", block)
    has1 = rng.random(n) < 0.9
    has2 = has1 & (rng.random(n) < 0.12)
    card_cust = np.concatenate([np.flatnonzero(has1), np.flatnonzero(has2)])
    j = np.concatenate([np.zeros(has1.sum(), np.int64), np.ones(has2.sum(), np.int64)])
    order = np.lexsort((j, card_cust))
    card_cust, j = card_cust[order], j[order]
    q = (cid[card_cust] - 1) * 2 + j  # dense ordinal -> unique card numbers
    m_card = len(q)
    long19 = rng.random(m_card) < 0.4
    bin16 = np.array(_BINS_16, np.int64)[rng.integers(0, len(_BINS_16), m_card)]
    bin19 = np.array(_BINS_19, np.int64)[rng.integers(0, len(_BINS_19), m_card)]
    body16 = _permute(q, 10**9, _keys(seed, "card16"))
    body19 = _permute(q, 10**12, _keys(seed, "card19"))
    payload = np.where(long19, bin19 * 10**12 + body19, bin16 * 10**9 + body16)
    check = np.where(long19, _luhn_check_digits(payload, 18), _luhn_check_digits(payload, 15))
    card_no = _str(payload * 10 + check)
    issued = np.maximum(opened[card_cust], a - rng.integers(0, 3650, m_card))
    expires = issued + 3652
    out["cards"] = pa.RecordBatch.from_arrays(
        [
            pa.array(cid[card_cust] * 10 + j),
            pa.array(cid[card_cust] * 10),
            pa.array(cid[card_cust]),
            card_no,
            _pick(("debit",), np.zeros(m_card, dtype=np.int64)),
            _date(issued),
            _date(expires),
            _pick(
                ("active", "lost", "expired"),
                np.where(expires < a, 2, (rng.random(m_card) < 0.01).astype(int)),
            ),
        ],
        schema=arrow_schema("cards"),
    )

    # transactions
    rng = _rng(seed, "transactions", block)
    payroll = (rng.random(n) < 0.4) & ~dormant
    payday = rng.integers(1, 29, n)
    month0 = np.datetime64(as_of, "M").astype("datetime64[D]").astype(np.int64)
    prev0 = (np.datetime64(as_of, "M") - 1).astype("datetime64[D]").astype(np.int64)
    pay_date = np.where(month0 + payday - 1 < a, month0 + payday - 1, prev0 + payday - 1)
    payroll &= pay_date >= a - WINDOW_DAYS
    p_cust = np.flatnonzero(payroll)
    p_acc = (np.cumsum(n_acc) - n_acc)[p_cust]  # the customer's current account (k == 0)
    p_sec = 9 * 3600 + rng.integers(0, 3 * 3600, len(p_cust))  # 09:00-12:00 local
    p_us = window_end_us + (pay_date[p_cust] - a) * _DAY_US + p_sec * 10**6
    lam = _TXNS_PER_ACCOUNT[acc_type] * np.where(acc_status == 0, 1.0, np.where(acc_status == 1, 0.05, 0.0))
    n_txn = rng.poisson(lam)
    o_acc = np.repeat(np.arange(m_acc), n_txn)
    o_kind = _choice_rows(rng, _KIND_P, acc_type[o_acc])
    day = rng.integers(0, WINDOW_DAYS, len(o_acc))
    daytime = rng.random(len(o_acc)) < 0.85
    sec = np.where(
        daytime,
        8 * 3600 + rng.integers(0, 15 * 3600, len(o_acc)),  # 08:00-23:00 local
        (23 * 3600 + rng.integers(0, 9 * 3600, len(o_acc))) % 86_400,
    )
    o_us = window_start_us + day * _DAY_US + sec * 10**6
    t_acc = np.concatenate([p_acc, o_acc])
    t_kind = np.concatenate([np.zeros(len(p_acc), np.int64), o_kind])
    t_us = np.concatenate([p_us, o_us])
    order = np.lexsort((t_us, t_acc))
    t_acc, t_kind, t_us = t_acc[order], t_kind[order], t_us[order]
    m_txn = len(t_acc)
    t_seg = acc_seg[t_acc]
    factor = np.where(t_kind == 10, 1.0, _SEGMENT_SPEND[t_seg])
    cents = _cents(rng, _KIND_MEDIAN[t_kind] * factor, _KIND_SIGMA[t_kind])
    cents = np.where(t_kind == 1, cents + LARGE_INFLOW_MIN * 100, cents)
    cents = np.where(t_kind == 9, np.maximum(cents // 10_000, 1) * 10_000, np.maximum(cents, 1))
    channel = _choice_rows(rng, _CHANNEL_P, t_kind)
    other = rng.random(m_txn) < _OTHER_BANK_P[t_kind]
    bank = rng.integers(0, len(OTHER_BANKS), m_txn)
    out["transactions"] = pa.RecordBatch.from_arrays(
        [
            pa.array(block * TXN_ID_STRIDE + np.arange(1, m_txn + 1, dtype=np.int64)),
            pa.array(account_id[t_acc]),
            pa.array(cid[acc_cust[t_acc]]),
            _ts(t_us),
            _money(cents),
            _pick(("credit", "debit"), (t_kind >= _N_CREDIT_KINDS).astype(np.int64)),
            _pick(TXN_KINDS, t_kind),
            _pick(OTHER_BANKS, bank, mask=~other),
            _pick(CHANNELS, channel),
        ],
        schema=arrow_schema("transactions"),
    )

    # holdings: suitability, product risk <= customer risk
    rng = _rng(seed, "holdings", block)
    n_hold = np.minimum(rng.poisson(np.array([0.9, 3.0, 6.0])[segment] * ~dormant), 30)
    h_cust = np.repeat(np.arange(n), n_hold)
    hj = np.arange(len(h_cust)) - np.repeat(np.cumsum(n_hold) - n_hold, n_hold)
    m_h = len(h_cust)
    p_risk = np.array([p[3] for p in _PRODUCTS])
    by_risk = np.argsort(p_risk, kind="stable")
    n_suitable = np.searchsorted(p_risk[by_risk], np.arange(1, 6), side="right")
    prod = by_risk[(rng.random(m_h) * n_suitable[risk[h_cust] - 1]).astype(np.int64)]
    p_term = np.array([p[4] for p in _PRODUCTS])[prod]
    p_min = np.array([p[6] * 100 for p in _PRODUCTS], dtype=np.int64)[prod]
    amount = np.maximum(_cents(rng, 30_000 * _SEGMENT_WEALTH[segment[h_cust]], 1.0) // 100 * 100, p_min)
    h_opened = opened[h_cust]
    mat = a + (rng.random(m_h) * p_term).astype(np.int64)
    start = np.maximum(mat - p_term, h_opened)
    mat = start + p_term
    open_start = a - (rng.random(m_h) * np.minimum(1500, a - h_opened)).astype(np.int64)
    start = np.where(p_term > 0, start, open_start)
    out["holdings"] = pa.RecordBatch.from_arrays(
        [
            pa.array(cid[h_cust] * 100 + hj),
            pa.array(cid[h_cust]),
            pa.array(prod + 1, pa.int32()),
            _money(amount),
            _date(start),
            pa.array(mat.astype(np.int32), type=pa.date32(), mask=p_term == 0),
            _pick(("active",), np.zeros(m_h, dtype=np.int64)),
        ],
        schema=arrow_schema("holdings"),
    )

    # contact history: only customers who consented to marketing
    rng = _rng(seed, "contact_history", block)
    n_con = rng.poisson(1.7 * consent)
    c_cust = np.repeat(np.arange(n), n_con)
    m_c = len(c_cust)
    camp = rng.integers(0, len(_CAMPAIGNS), m_c)
    camp_channel = np.array([CONTACT_CHANNELS.index(c[5]) for c in _CAMPAIGNS])[camp]
    camp_end_us = window_end_us + np.minimum(np.array([c[7] for c in _CAMPAIGNS]), 0)[camp] * _DAY_US
    c_us = window_start_us + (rng.random(m_c) * (camp_end_us - window_start_us)).astype(np.int64)
    c_us -= c_us % 1_000_000
    outcome = _choice_rows(rng, _OUTCOME_P, camp_channel)
    order = np.lexsort((c_us, c_cust))
    c_cust, camp, camp_channel, c_us, outcome = (
        c_cust[order],
        camp[order],
        camp_channel[order],
        c_us[order],
        outcome[order],
    )
    out["contact_history"] = pa.RecordBatch.from_arrays(
        [
            pa.array(block * CONTACT_ID_STRIDE + np.arange(1, m_c + 1, dtype=np.int64)),
            pa.array(cid[c_cust]),
            pa.array(camp + 1, pa.int32()),
            _pick(CONTACT_CHANNELS, camp_channel),
            _ts(c_us),
            _pick(CONTACT_OUTCOMES, outcome),
        ],
        schema=arrow_schema("contact_history"),
    )
    return out


# --- public API -----------------------------------------------------------------------

FACT_TABLES = ("customers", "accounts", "cards", "transactions", "holdings", "contact_history")
DIMENSION_TABLES = ("branches", "products", "campaigns")


def dimensions(
    sf: float, seed: int = DEFAULT_SEED, *, as_of: dt.date = AS_OF
) -> list[tuple[str, pa.RecordBatch]]:
    """The small tables (branches, products, campaigns), one batch each."""
    plan = Plan.of(sf)
    return [
        ("branches", _branches(plan, seed, as_of)),
        ("products", _products(seed, as_of)),
        ("campaigns", _campaigns(seed, as_of)),
    ]


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches(max_chunksize=table.num_rows)[0]


def generate_chunk(
    sf: float,
    seed: int,
    index: int,
    *,
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS,
    as_of: dt.date = AS_OF,
) -> list[tuple[str, pa.RecordBatch]]:
    """The fact tables' rows of chunk ``index`` alone, parents before children."""
    plan = Plan.of(sf)
    per = _blocks_per_chunk(chunk_customers)
    blocks = range(index * per, min((index + 1) * per, plan.blocks))
    if not blocks:
        raise ValueError(f"chunk {index} is beyond the {plan.chunks(chunk_customers)} chunks of SF {sf}")
    parts = [_block(plan, seed, b, as_of) for b in blocks]
    return [(t, _concat([p[t] for p in parts])) for t in FACT_TABLES]


def generate(
    sf: float,
    seed: int = DEFAULT_SEED,
    *,
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS,
    as_of: dt.date = AS_OF,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ``(table, batch)`` for the whole bank, parents before children.

    First the dimensions, then per chunk of ``chunk_customers`` customers (rounded up
    to whole blocks of :data:`BLOCK_CUSTOMERS`) the customers, accounts, cards,
    transactions, holdings and contact history. Memory is bounded by one chunk. The
    ``decisions`` table is never yielded (it starts empty).
    """
    plan = Plan.of(sf)
    yield from dimensions(sf, seed, as_of=as_of)
    for index in range(plan.chunks(chunk_customers)):
        yield from generate_chunk(sf, seed, index, chunk_customers=chunk_customers, as_of=as_of)


# --- validators (pure Python; reused as detectors) --------------------------------------

_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"
_DIGITS = frozenset("0123456789")


def id_number_valid(s: object) -> bool:
    """True for an 18-digit PRC resident ID number with a plausible region, a real birth
    date (1850 .. today) and a correct ISO 7064 MOD 11-2 check character (``X`` = 10)."""
    if not isinstance(s, str) or len(s) != 18:
        return False
    body, check = s[:17], s[17].upper()
    if not set(body) <= _DIGITS or check not in _ID_CHECK or body[0] not in "12345678":
        return False
    try:
        born = dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return False
    if not dt.date(1850, 1, 1) <= born <= dt.date.today():
        return False
    total = sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == check


def luhn_valid(s: object) -> bool:
    """True for a string of at least two digits whose Luhn (mod 10) checksum is 0."""
    if not isinstance(s, str) or len(s) < 2 or not set(s) <= _DIGITS:
        return False
    total = 0
    for i, c in enumerate(reversed(s)):
        d = ord(c) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mobile_valid(s: object) -> bool:
    """True for an 11-digit mainland China mobile number with an allocated prefix."""
    return isinstance(s, str) and len(s) == 11 and set(s) <= _DIGITS and s[:3] in _VALID_MOBILE_PREFIXES
