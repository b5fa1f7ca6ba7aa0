"""One-off conversion of the raw Keitaro template export into clickloop's template catalog.

Usage: python tools/build_catalog.py RAW_DIR [OUT_DIR]
RAW_DIR holds traffic_sources.json and affiliate_networks.json (Orbitra 1.1.10 export);
OUT_DIR defaults to src/clickloop/catalog. Every repair is either a rule below or an entry of
TS_OVERRIDES / NETWORK_OVERRIDES with the reason beside it, so the cleaning can be reviewed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

CATALOG_VERSION = 1
RAW_SOURCE = "Keitaro templates via Orbitra 1.1.10 (MIT), cleaned by tools/build_catalog.py"
NETWORK_PREFIX = "http://{domain}/{postback_key}/postback?"
BUILT_IN_TYPES = ("lead", "sale", "rejected", "registration", "deposit", "trash", "rebill")

# Macro typos found by checking every {macro} of every S2S URL against SPEC §4.
MACRO_TYPOS = {
    "{externa_id}": "{external_id}",
    "{coversion_revenue}": "{conversion_revenue}",
    "{your_extenal_id_paramater}": "{external_id}",
}

Field = tuple[str, str, str]  # name, label, placeholder_in_url
# Source fields holding a credential: marked "secret", so their values are masked when shown.
SECRET_FIELD_NAMES = frozenset(
    {"token", "key", "api_key", "access_token", "postback_key", "tracking_key", "personal_hash"}
    | {"app_key"}
)

# An S2S URL returning {external_id} is useless when no parameter row captures the click id.
NO_CLICK_ID_ROW = (
    "the S2S URL sends {external_id}, which no parameter row captures: the source's click id "
    "never comes back to it; add the row with the source's click-id macro"
)

# The day the documentation pages below were read.
CHECKED_ON = "2026-12-04"
UNDOCUMENTED = (
    f"no public postback documentation of this source was found (searched {CHECKED_ON}): "
    "the template is Keitaro's, not checked"
)

# Sources checked against public documentation: (the page the template was taken from or
# checked against, the source's own domain).
TS_PROVENANCE: dict[str, tuple[str, str]] = {
    "adcashcom": ("https://support.adcash.com/en/articles/243-tracking-101", "adcash.com"),
    "adsterra_com": (
        "http://help-advertisers.adsterra.com/en/articles/4575914-how-do-i-setup-postback",
        "adsterra.com",
    ),
    "adxad_com": ("https://adxad.com/en/conversions-import-service", "adxad.com"),
    "clickadilla_com": (
        "https://clickadilla.com/help/advertisers/postback-url-and-conversion-tracking-in-statistics",
        "clickadilla.com",
    ),
    "clickadu_com": (
        "https://support.clickadu.com/hc/en-us/articles/"
        "360001757198-How-to-integrate-Clickadu-S2S-conversion-tracking-",
        "clickadu.com",
    ),
    "exoclick": ("https://docs.exoclick.com/docs/conversion-tracking-api/", "exoclick.com"),
    "kadam_net": (
        "https://wiki.kadam.net/en/index.php?oldid=6742&title=Configuring_postback_for_CPA",
        "kadam.net",
    ),
    "mgid": ("https://help.mgid.com/postback-setting-algorithm-in-mgid-dashboard/", "mgid.com"),
    "mondiad": ("https://docs.bemob.com/en/mondiad", "mondiad.com"),
    "outbrain": ("https://stape.io/helpdesk/documentation/outbrain-s2s-tag", "outbrain.com"),
    "propellerads": (
        "https://help.bemob.com/docs/adding-a-traffic-source-from-template",
        "propellerads.com",
    ),
    "richadspop": ("https://docs.bemob.com/en/richads-pops", "richads.com"),
    "taboola": ("https://developers.taboola.com/pixel/docs/the-postback-url", "taboola.com"),
    "trafficforcecom": (
        "https://kintura.com/docs/presets/pairings/traffic-force/clickbooth",
        "trafficforce.com",
    ),
    "trafficstars_com": (
        "https://trafficstars.com/faq/articles/how-to-set-up-tracking-conversions",
        "trafficstars.com",
    ),
    "zeropark": ("http://v7.help-legacy.keitaro.io/en/sendpostbacks", "zeropark.com"),
}

# Per-source repairs. "replace" pairs are applied in order to the raw S2S URL; "fields" are the
# placeholders the user must fill (after the replacements).
TS_OVERRIDES: dict[str, dict[str, Any]] = {
    "50onredcom": {"fields": [("account_id", "50onred account value (v)", "XXXXXX")]},
    "adcmcmcomcheetahad": {
        "fields": [("subdomain", "Your adkmob.com postback subdomain", "XXXXX")],
    },
    "adcashcom": {
        # The same word "yourvalue" stood for three different values: give each its own.
        # Adcash's global S2S postback takes type, advertiser, id and cid; "campagne" is no
        # parameter of it (the campaign belongs to the HTML pixel), so it is dropped.
        "replace": [
            ("advertiser=yourvalue", "advertiser=YOUR_ADVERTISER_ID"),
            ("id=yourvalue", "id=YOUR_EVENT_ID"),
            ("&campagne=yourvalue", ""),
        ],
        "fields": [
            ("advertiser_id", "Adcash advertiser ID", "YOUR_ADVERTISER_ID"),
            ("event_id", "Adcash conversion event ID", "YOUR_EVENT_ID"),
        ],
        "notes": "dropped campagne=, which Adcash's global S2S postback does not take",
    },
    "adoperator_com": {
        # {conversion} is the source's own macro; its parameter row stores it as external_id.
        "replace": [("{conversion}", "{external_id}")],
    },
    "adsbigo_app": {"fields": [("app_key", "BIGO Ads app key", "your-parameter")]},
    "adsbigo_web": {
        # bbg and pixel_id are captured by the parameter rows sub_id_12 and sub_id_14.
        "replace": [
            ("bbg=xxx", "bbg={sub_id_12}"),
            ("pixel_id=xxx", "pixel_id={sub_id_14}"),
        ],
        "fields": [
            (
                "event_id",
                "BIGO Ads ad group conversion event ID",
                "[YOUR_AD_GROUP_CONVERSION_EVENT_ID]",
            )
        ],
    },
    "adset_tools": {
        "defect": "the S2S URL sends {uid}, which no parameter row of this source captures; "
        "ask adset.tools which click parameter carries the uid",
    },
    "ad_maven_com": {"notes": UNDOCUMENTED},
    "adsgram_ai": {"replace": [("{click_id}", "{external_id}")]},
    "avazu_com": {"defect": NO_CLICK_ID_ROW},
    "bandaapps_com": {"defect": NO_CLICK_ID_ROW},
    "devilspwa_com": {
        "defect": "the S2S URL sends {external_id} and {creative_id}, which no parameter row "
        "captures: the source's click id never comes back to it",
    },
    "pushground": {
        # The click id arrives in click_id, stored as sub_id_1; the postback must return it.
        "replace": [("{external_id}", "{sub_id_1}")],
    },
    "trident_media_agency_android_tenjin_moloko": {"defect": NO_CLICK_ID_ROW},
    "adxad_com": {
        # ADxAD's type takes goal1, goal2 or goal3, not the bare digits of the raw data.
        "replace": [("{status: lead=1 sale=2}", "{status:lead=goal1 sale=goal2}")],
        "notes": "type sends goal1 for leads and goal2 for sales, as ADxAD's goals are named",
    },
    "adskeeper_co_uk": {
        "replace": [("{click_id}", "{external_id}"), ("e=replace", "e=YOUR_EVENT")],
        "fields": [("event", "Adskeeper conversion stage name (e)", "YOUR_EVENT")],
    },
    "adsterra_com": {
        "fields": [("advertiser_name", "Adsterra advertiser name", "NAMEOFADVERTISER")],
    },
    "adxpansion_com": {"fields": [("token", "AdXpansion API token", "XXXXXXX")]},
    "alium_one": {"fields": [("token", "alium.one tracking token", "UNIQUE_TOKEN")]},
    "appsheroes_com": {"replace": [("{clickid}", "{sub_id_8}")]},
    "bidvertiser_com": {
        "notes": UNDOCUMENTED,
        "replace": [("{BV_CLICKID}", "{external_id}"), ("{REVENUE}", "{payout}")],
        "fields": [("aid", "Bidvertiser advertiser ID (AID)", "{AID-FROM-DASHBOARD}")],
    },
    "bitmedia_io": {
        # The raw URL carried somebody's own conversion ID: a value every user must set.
        "replace": [("conversionID=679650bcf7ab02f6b4c8ab9b", "conversionID=YOUR_CONVERSION_ID")],
        "fields": [("conversion_id", "Bitmedia conversion ID", "YOUR_CONVERSION_ID")],
    },
    "bodyclick_ru": {
        # XXXXXXX is a substring of XXXXXXXX: name them apart.
        "replace": [("k=XXXXXXX&t=XXXXXXXX", "k=YOUR_KEY&t=YOUR_TOKEN")],
        "fields": [
            ("key", "bodyclick key (k)", "YOUR_KEY"),
            ("token", "bodyclick token (t)", "YOUR_TOKEN"),
        ],
    },
    "clickadilla_com": {"fields": [("token", "Clickadilla postback token", "REPLACE")]},
    "clickadu_com": {
        "fields": [
            ("personal_hash", "Clickadu personal hash", "REPLACE_PERSONAL_HASH"),
            ("aid", "Clickadu advertiser ID (aid)", "REPLACE_AID"),
        ],
    },
    "dao_ad": {"fields": [("key", "Dao.ad postback key", "{REPLACE}")]},
    "galaksion_com": {"fields": [("cid", "Galaksion postback ID (cid)", "######")]},
    "go2mobi_com": {"fields": [("api_key", "go2mobi API key", "API_KEY")]},
    "hilltopads_com": {
        "notes": UNDOCUMENTED,
        "replace": [
            ("currency=replace", "currency=YOUR_CURRENCY"),
            ("advertiserId=REPLACE", "advertiserId=YOUR_ADVERTISER_ID"),
        ],
        "fields": [
            ("currency", "Currency of your HilltopAds account", "YOUR_CURRENCY"),
            ("advertiser_id", "HilltopAds advertiser ID", "YOUR_ADVERTISER_ID"),
        ],
    },
    "inmobi_com": {"fields": [("property_id", "InMobi property ID", "PROPERTY_ID")]},
    "juicyads_com": {
        "notes": UNDOCUMENTED,
        "replace": [
            ("token={replace}", "token=YOUR_TOKEN"),
            ("data={replace}", "data=YOUR_DATA"),
            ("goal={replace}", "goal=YOUR_GOAL"),
        ],
        "fields": [
            ("token", "JuicyAds token", "YOUR_TOKEN"),
            ("data", "JuicyAds data value", "YOUR_DATA"),
            ("goal", "JuicyAds goal", "YOUR_GOAL"),
        ],
    },
    "keitaro": {
        # A Keitaro postback without subid is always ignored; the upstream tracker's click id
        # is what this source passes as external_id.
        "replace": [("postback?status=", "postback?subid={external_id}&status=")],
        "fields": [
            ("domain", "Domain of the upstream Keitaro tracker", "DOMAIN"),
            ("postback_key", "Postback key of the upstream Keitaro tracker", "POSTBACK_KEY"),
        ],
    },
    "kwai_com": {
        "fields": [
            ("event_name", "Kwai event name", "{event_name}"),
            ("pixel_id", "Kwai pixel ID", "{pixelId}"),
            ("access_token", "Kwai access token", "{access_token}"),
        ],
    },
    "liteapp_rent": {"fields": [("team_id", "Your team ID", "TEAM_ID")]},
    "marketgid_com": {
        "notes": "MGID's former domain (see the mgid template): MGID matches e against the "
        "event names of the campaign's goals, so name the goals after the statuses sent",
    },
    "mira": {"fields": [("team_name", "Your team name", "TeamName")]},
    "mondiad": {"fields": [("uid", "Mondiad user ID (uid)", "replace")]},
    "mybid_io": {"fields": [("goal_id", "mybid goal ID", "REPLACE")]},
    "noviclick_com": {"fields": [("key", "Noviclick postback key", "[REPLACE-WITH-KEY]")]},
    "onclicka_com": {
        # Sibling of Clickadilla: campaign_id is the source's campaign, i.e. ad_campaign_id.
        "replace": [("{campaign_id}", "{ad_campaign_id}")],
        "fields": [("token", "Onclicka postback token", "REPLACE")],
    },
    "popcash_net": {
        "notes": UNDOCUMENTED,
        "replace": [
            ("[your_clickid_token]", "{external_id}"),
            ("[your_payout_token]", "{payout}"),
        ],
        "fields": [("user_id", "PopCash user ID (aid)", "[put_userID]")],
        "defect": NO_CLICK_ID_ROW,
    },
    "reacheffect_com": {"fields": [("user_id", "ReachEffect user ID (pid)", "[YourUserID]")]},
    "rivertraffic_com": {"fields": [("account_name", "RiverTraffic account name", "ACCOUNT_NAME")]},
    "rollerads_com": {
        "notes": UNDOCUMENTED,
        "replace": [("{clickid}", "{external_id}")],
        "fields": [
            ("account_number", "RollerAds account number", "[account_number]"),
            ("tracking_key", "RollerAds tracking key", "[tracking_key]"),
        ],
    },
    "skakapp_com": {"fields": [("client_id", "Your SKAK client ID", "client_ID_SKAK")]},
    "tacolo_co": {"fields": [("user", "Tacolo user ID", "replace")]},
    "tdrentapps_com": {
        # The source's macros were used where our parameter rows (sub_id_7..9) hold them.
        "replace": [
            ("{app_id}", "{sub_id_9}"),
            ("{ad_id}", "{sub_id_7}"),
            ("{deviceID}", "{sub_id_8}"),
        ],
        "fields": [("team_name", "Your team name", "TeamName")],
    },
    "titanpwa_com": {
        "replace": [("{visitor_fbc}", "{sub_id_16}"), ("{visitor_fbp}", "{sub_id_15}")],
    },
    "trafficnomads_com": {"replace": [("{pubid}", "{source}")]},
    "trafficshop_com": {
        "fields": [("track_id", "Trafficshop track ID", "__REPLACE_TRACK_ID__")],
    },
    "traffichunt_com": {"fields": [("nid", "TrafficHunt network ID (nid)", "YOUR_ID")]},
    "trafficjunky_com": {"notes": UNDOCUMENTED},
    "trafficstars_com": {
        # The raw export had none; TrafficStars' own guide gives the advanced S2S postback.
        "postback_url": "https://tsyndicate.com/api/v1/cpa/action?clickid={external_id}"
        "&value={payout}&key=YOUR_KEY",
        "fields": [("key", "TrafficStars S2S secret key (Tracking Tools page)", "YOUR_KEY")],
        "add_parameters": [
            {"alias": "sub_id_7", "param": "site_id", "macro": "{site_id}"},
            {"alias": "sub_id_8", "param": "geo", "macro": "{geo}"},
            {"alias": "sub_id_9", "param": "os", "macro": "{os}"},
        ],
    },
    "trafficvance_com": {"fields": [("id", "TrafficVance ID", "YOUR_ID")]},
    "traforama_com": {"fields": [("subid", "Traforama subid", "REPLACE")]},
    "trending_bid": {"replace": [("${trackid}", "{external_id}")]},
    "twinred_com": {
        "notes": UNDOCUMENTED,
        "fields": [("tracker_name", "TwinRed unique tracker name", "UNIQUE_TRACKER_NAME")],
    },
    "ungads_com": {"fields": [("postback_id", "UngAds postback ID", "REPLACE")]},
    "wildwildapps_net": {
        # "postback/subid=" lost its "?": without it the source gets one long path segment.
        "replace": [("/postback/subid=", "/postback?subid=")],
        "fields": [("partner_name", "Your partner name", "partner_name")],
    },
    "youtarget_com": {"fields": [("postback_id", "Youtarget postback ID", "##postback_id##")]},
    "redirect_com": {
        "notes": "sends our {subid}: redirect.com has no click-id macro in its parameters",
    },
    "octoclick": {
        "notes": "status is fixed to approved, so by default only sales are sent",
    },
}

# Sources we know to answer 200 with an error text: the delivery must check the body.
TS_RESPONSE_MUST_CONTAIN = {"exoclick": "OK"}

# Sources missing from the raw export that the issue names.
TS_ADDED: list[dict[str, Any]] = [
    {
        "name": "exoclick",
        "display_name": "ExoClick",
        "postback_url": "https://s.magsrv.com/tag.php?goal=YOUR_ID&tag={external_id}"
        "&value={payout}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "{conversions_tracking}"},
            {"alias": "source", "param": "source", "macro": "{src_hostname}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{campaign_id}"},
            {"alias": "creative_id", "param": "creative_id", "macro": "{variation_id}"},
            {"alias": "sub_id_1", "param": "zone", "macro": "{zoneid}"},
        ],
        "_fields": [("goal_id", "ExoClick conversion goal ID (32 hex digits)", "YOUR_ID")],
        "_notes": "not in the raw export; built from ExoClick's conversion tracking API, which "
        "answers 200 with OK or 'ERROR: ...', so the body must contain OK; value is used only "
        "by goals with a dynamic value; check the host against your ExoClick panel",
    },
    {
        "name": "propellerads",
        "display_name": "PropellerAds",
        "postback_url": "https://ad.propellerads.com/conversion.php?aid=YOUR_AID&pid="
        "&tid=YOUR_TID&visitor_id={external_id}&payout={payout}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "${SUBID}"},
            {"alias": "sub_id_1", "param": "zoneid", "macro": "{zoneid}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{campaignid}"},
            {"alias": "creative_id", "param": "creative_id", "macro": "{bannerid}"},
            {"alias": "cost", "param": "cost", "macro": "{cost}"},
            {"alias": "sub_id_2", "param": "country", "macro": "{country}"},
            {"alias": "sub_id_3", "param": "os", "macro": "{os}"},
        ],
        "_fields": [
            ("aid", "PropellerAds aid (from the postback URL on your Tracking page)", "YOUR_AID"),
            ("tid", "PropellerAds tid (from the postback URL on your Tracking page)", "YOUR_TID"),
        ],
        "_notes": "not in the raw export; the postback takes your account's aid and tid and "
        "the visitor_id PropellerAds sent as ${SUBID}; {zoneid}, {campaignid}, {bannerid}, "
        "{cost}, {country} and {os} are PropellerAds campaign URL macros",
    },
    {
        "name": "zeropark",
        "display_name": "Zeropark",
        "postback_url": "http://postback.zeroredirect1.com/zppostback/YOUR_POSTBACK_KEY"
        "?cid={external_id}&payout={payout}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "{cid}"},
            {"alias": "sub_id_1", "param": "target", "macro": "{target}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{campaign_id}"},
            {"alias": "source", "param": "source", "macro": "{source}"},
            {"alias": "keyword", "param": "keyword", "macro": "{keyword}"},
            {"alias": "sub_id_2", "param": "geo", "macro": "{geo}"},
            {"alias": "sub_id_3", "param": "carrier", "macro": "{carrier}"},
            {"alias": "sub_id_4", "param": "traffic_type", "macro": "{traffic_type}"},
            {"alias": "sub_id_5", "param": "visitor_type", "macro": "{visitor_type}"},
        ],
        "_fields": [
            (
                "postback_key",
                "Zeropark postback key (the ID in the path of your Zeropark postback URL)",
                "YOUR_POSTBACK_KEY",
            )
        ],
        "_notes": "not in the raw export; Keitaro's guide gives {cid} and the zppostback "
        "address; the other macros are Zeropark's campaign URL tokens; some accounts are "
        "given a zp-postback.com host: copy the host and key from your Zeropark panel",
    },
    {
        "name": "mgid",
        "display_name": "MGID",
        "postback_url": "https://a.mgid.com/postback?c={external_id}&e=YOUR_EVENT&r={payout}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "{click_id}"},
            {"alias": "source", "param": "source", "macro": "{widget_id}"},
            {"alias": "creative_id", "param": "creative_id", "macro": "{teaser_id}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{campaign_id}"},
            {"alias": "cost", "param": "cost", "macro": "{click_price}"},
            {"alias": "sub_id_1", "param": "geo", "macro": "{geo}"},
            {"alias": "sub_id_2", "param": "category_id", "macro": "{category_id}"},
        ],
        "_fields": [("event", "MGID event name of the conversion goal (e)", "YOUR_EVENT")],
        "_notes": "not in the raw export (marketgid_com is MGID's former domain); c is the "
        "{click_id} MGID sent, e the event name of the goal set in the campaign, r the "
        "revenue; macros from MGID's 'Macros' help page",
    },
    {
        "name": "taboola",
        "display_name": "Taboola",
        "postback_url": "https://trc.taboola.com/actions-handler/log/3/s2s-action"
        "?click-id={external_id}&name=YOUR_EVENT_NAME&revenue={payout}&currency={currency}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "{click_id}"},
            {"alias": "source", "param": "source", "macro": "{site_id}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{campaign_id}"},
            {"alias": "creative_id", "param": "creative_id", "macro": "{campaign_item_id}"},
            {"alias": "sub_id_1", "param": "site", "macro": "{site}"},
            {"alias": "sub_id_2", "param": "platform", "macro": "{platform}"},
        ],
        "_fields": [
            ("event_name", "Taboola event name, exactly as in Taboola Ads", "YOUR_EVENT_NAME")
        ],
        "_notes": "not in the raw export; the click id parameter must be named click-id; "
        "currency must be one Taboola supports (USD, EUR, GBP...) or Taboola uses the "
        "account's; campaign macros as listed by Kintura's Taboola preset",
    },
    {
        "name": "outbrain",
        "display_name": "Outbrain",
        "postback_url": "https://tr.outbrain.com/unifiedPixel?ob_click_id={external_id}"
        "&name=YOUR_EVENT_NAME&orderValue={payout}&currency={currency}",
        "parameters": [
            {"alias": "external_id", "param": "external_id", "macro": "{{ob_click_id}}"},
            {"alias": "ad_campaign_id", "param": "ad_campaign_id", "macro": "{{campaign_id}}"},
            {"alias": "creative_id", "param": "creative_id", "macro": "{{ad_id}}"},
            {"alias": "source", "param": "source", "macro": "{{publisher_id}}"},
            {"alias": "sub_id_1", "param": "publisher_name", "macro": "{{publisher_name}}"},
            {"alias": "sub_id_2", "param": "section_id", "macro": "{{section_id}}"},
            {"alias": "sub_id_3", "param": "section_name", "macro": "{{section_name}}"},
        ],
        "_fields": [
            (
                "event_name",
                "Outbrain conversion event name, exactly as in Outbrain (name)",
                "YOUR_EVENT_NAME",
            )
        ],
        "_notes": "not in the raw export; Outbrain's server-to-server guide is "
        "https://www.outbrain.com/help/advertisers/server2server-integrations/ and the "
        "request shape (ob_click_id, name, orderValue, currency) is the one Stape's Outbrain "
        "S2S tag sends; Outbrain fills {{ob_click_id}} and the other {{...}} macros",
    },
]

STATUS_PLACEHOLDERS = {"REPLACE", "[REPLACE]", "replace", "{replace}", "[replace]", ""}
FAMILY_STATUSES = "reg,dep,lead,approve,reject,rebill"
STATUS_FIELD_LABEL = (
    "Status this postback reports: the network sends one postback per event, "
    "set the status word for this one"
)

# Per-network repairs: "params" replaces (param, value) pairs, "add"/"drop" params, "offer"
# replaces the offer parameters, "defect" marks a template that cannot work as shipped.
NETWORK_OVERRIDES: dict[str, dict[str, Any]] = {
    "atlas_network": {"params": {"currency": "{currency}"}},  # lost braces, like every Affise
    "dugwap_ru": {"rename": {"payour": "payout"}},
    "adwad": {"rename": {"txid": "tid"}},
    "altercpa_pro": {"rename": {"reject_status": "rejected_status"}},
    "profitpay_one": {"rename": {"reject_status": "rejected_status"}},
    "cpaexchange": {"rename": {"transaction_id": "tid"}},
    "orangear_com": {
        # The network's payout macro landed in the status slot, and there is no payout param.
        "rename": {"status": "payout"},
    },
    "leaddealer_net": {"offer": "&call-id={subid}"},  # {sub_id} is not a macro; {subid} is
    "profitpeak_com": {"offer": "&afp1={subid}"},  # bracketed param name, cf. Cell.expert
    "moneysyst_biz": {"offer": "&source={subid}&utm_medium={source}&key={keyword}"},
    "iqoption": {
        "offer": "&clickid={subid}",
        "notes": "the raw template had {subid:true}; that argument means nothing here",
    },
    "jumbleberry_com": {"macros": ["xxc1xx", "xxpayoutxx"]},
    # A bare space would end the URL in many networks' forms: encode it.
    "impact_com": {"params": {"lead_status": "lead,free%20trial"}},
    "mosbill_ru": {
        "defect": "the postback values lost their macro delimiters (subid=ext_id, "
        "tid=notify_id): mosbill's macro syntax cannot be recovered from the data",
    },
    "7bitpartners_com": {
        "defect": "payout=amount lost its macro delimiters; the network's payout macro "
        "cannot be recovered from the data",
    },
    "leadsalecom": {
        "defect": "offer parameters pass {aff_sub} instead of our {subid} and the postback "
        "maps {aff_sub} to payout: the click id never reaches the network",
    },
    "betwin_partners": {
        "defect": "the offer link appends a partner id to the subid ({subid}_{replace_ID}); "
        "the value the network returns is not a bare subid and matches no click",
    },
    "pmaffiliates_com": {
        # Unlike betwin, the postback returns source_id1 (the part before _), not anid.
        "offer_fields": [
            ("partner_id", "Your partner ID (sent after the subid in anid)", "{replace_ID}")
        ],
    },
    "onepartners_io": {
        "offer_fields": [("sub_id1", "Your sub_id1 value for Onepartners", "{YOUR_ID}")],
    },
    "trinity_mx": {
        "offer_fields": [
            ("source_id", "Your trinity.mx source ID (sub2)", "YOUR_SOURCE_ID"),
            ("subsource_id", "Your trinity.mx subsource ID (sub3)", "YOUR_SUBSOURCE_ID"),
        ],
    },
    "yesplayaffiliates_com": {
        "offer_fields": [
            ("webid_macro", "Click field to pass as webid, e.g. {sub_id_1}", "{sub_id_№}"),
        ],
        "notes": "payout is fixed to 1 in the network's own template",
    },
}

NETWORK_MACRO = re.compile(
    r"\{\{[^{}]+\}\}|\[\[\[[^\]]+\]\]\]|##[^#]+##|#\{[^}]+\}|\$\{[^}]+\}|\{[^{}]+\}"
    r"|\[=[^\]]+=\]|\[[^\]]+\]|%[^%&]+%|<[^>]+>|#[^#&]+#"
)
LITERAL = re.compile(r"[A-Za-z0-9_.,:%\- ]*")
STATUS_MAPPING = re.compile(r"\{status:\s*([^{}]*)\}")


def main(argv: list[str]) -> int:
    """Read the raw export from argv[1] and write both catalog files."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    raw = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else Path("src/clickloop/catalog")
    sources = json.loads((raw / "traffic_sources.json").read_text(encoding="utf-8"))
    networks = json.loads((raw / "affiliate_networks.json").read_text(encoding="utf-8"))
    ts = [convert_traffic_source(entry) for entry in [*sources, *TS_ADDED]]
    an = [convert_network(entry) for entry in networks]
    write(out / "traffic_sources.json", "traffic_sources", ts)
    write(out / "affiliate_networks.json", "affiliate_networks", an)
    print(f"{len(ts)} traffic sources, {len(an)} affiliate networks written to {out}")
    return 0


def write(path: Path, kind: str, templates: list[dict[str, Any]]) -> None:
    """Write one catalog file: stable key order, one template per block, UTF-8."""
    templates.sort(key=lambda t: t["key"])
    document: dict[str, Any] = {"version": CATALOG_VERSION, "kind": kind, "source": RAW_SOURCE}
    document["templates"] = templates
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def convert_traffic_source(entry: dict[str, Any]) -> dict[str, Any]:
    """Clean one raw traffic source into a catalog entry."""
    key = entry["name"]
    override = TS_OVERRIDES.get(key, {})
    parameters: list[dict[str, str]] = []
    notes: list[str] = []
    rows = [*entry["parameters"], *override.get("add_parameters", [])]
    for row in map(convert_parameter, rows):
        # One query parameter can fill only one field: the first row wins.
        if any(row["param"] == kept["param"] for kept in parameters):
            notes.append(f"dropped duplicate row {row['name']} for parameter {row['param']}")
        else:
            parameters.append(row)
    fields = list(entry.get("_fields", [])) + list(override.get("fields", []))
    url = override.get("postback_url", entry["postback_url"]).strip() or None
    if url is None:
        notes.append("no S2S postback is known for this source")
    else:
        for typo, fixed in MACRO_TYPOS.items():
            if typo in url:
                url = url.replace(typo, fixed)
                notes.append(f"fixed macro typo {typo}")
        for old, new in override.get("replace", []):
            if old not in url:
                raise SystemExit(f"{key}: override text {old!r} not in {url!r}")
            url = url.replace(old, new)
        # Keitaro writes "{status: lead=reg}"; our macro syntax has no space after the colon.
        url = STATUS_MAPPING.sub(lambda m: "{status:" + m.group(1).strip() + "}", url)
        url = add_scheme(url)
    if "_notes" in entry:
        notes.append(entry["_notes"])
    if "notes" in override:
        notes.append(override["notes"])
    provenance: dict[str, str] = {}
    if key in TS_PROVENANCE:
        url_checked, domain = TS_PROVENANCE[key]
        provenance = {"documentation_url": url_checked, "checked_on": CHECKED_ON}
        provenance["domain"] = domain
    return {
        "key": key,
        "name": entry["display_name"].strip(),
        **provenance,
        "parameters": parameters,
        "postback_url": url,
        "postback_method": "GET",
        "postback_statuses": default_statuses(url),
        "response_must_contain": TS_RESPONSE_MUST_CONTAIN.get(key),
        "fields": [field_dict(f, secret=f[0] in SECRET_FIELD_NAMES) for f in fields],
        "notes": "; ".join(notes),
        "defect": override.get("defect"),
    }


def convert_parameter(row: dict[str, str]) -> dict[str, str]:
    """Rename alias to name; trim stray spaces; a space inside a query parameter becomes _."""
    return {
        "name": row["alias"].strip(),
        "param": re.sub(r"\s+", "_", row["param"].strip()),
        "macro": row["macro"].strip(),
    }


def add_scheme(url: str) -> str:
    """Give a bare host https://, the scheme every current source accepts."""
    return url if re.match(r"https?://", url) else "https://" + url


def default_statuses(url: str | None) -> list[str]:
    """Which conversion types a user expects sent, judged from what the URL can tell apart.

    A status mapping names its types. A plain {status} lets the source tell types apart, so
    every positive type goes (never rejected/trash: a source counts each call as a conversion).
    Without any status the source counts every call, so only confirmed money goes: sale and
    deposit, never lead then sale for the same conversion.
    """
    if url is None:
        return []
    mapped = STATUS_MAPPING.findall(url)
    if mapped:
        types = {pair.split("=", 1)[0] for m in mapped for pair in m.split() if "=" in pair}
        return [t for t in BUILT_IN_TYPES if t in types]
    if re.search(r"\{_?status\}", url):
        return ["lead", "sale", "registration", "deposit"]
    return ["sale", "deposit"]


def field_dict(
    field: Field, choices: list[str] | None = None, *, secret: bool = False
) -> dict[str, Any]:
    name, label, placeholder = field
    result: dict[str, Any] = {"name": name, "label": label, "placeholder_in_url": placeholder}
    if choices:
        result["choices"] = choices
    if secret:
        result["secret"] = True
    return result


def convert_network(entry: dict[str, Any]) -> dict[str, Any]:
    """Clean one raw affiliate network into a catalog entry."""
    key = entry["name"]
    override = NETWORK_OVERRIDES.get(key, {})
    notes: list[str] = []
    fields: list[dict[str, Any]] = []
    offer = override.get("offer", entry["offer_params_template"].strip())
    fields += [field_dict(f) for f in override.get("offer_fields", [])]
    raw_url = entry["postback_url_template"].strip()
    params: list[list[str]] | None = None
    if not raw_url:
        notes.append("the network has no postback; conversions must be imported or sent by hand")
    else:
        if not raw_url.startswith(NETWORK_PREFIX):
            raise SystemExit(f"{key}: unexpected postback URL {raw_url!r}")
        params = [
            list(pair.partition("=")[::2]) for pair in raw_url[len(NETWORK_PREFIX) :].split("&")
        ]
        for pair in params:
            pair[0] = override.get("rename", {}).get(pair[0], pair[0])
            pair[1] = override.get("params", {}).get(pair[0], pair[1])
        notes += [f"renamed {a} to {b}" for a, b in override.get("rename", {}).items()]
        fields += extract_network_fields(params, notes)
    macros = override.get("macros")
    if macros is None:
        strict = "defect" not in override
        macros = [] if params is None else network_macros(params, fields, strict=strict)
    if "notes" in override:
        notes.append(override["notes"])
    return {
        "key": key,
        "name": entry["display_name"].strip(),
        "offer_params": offer,
        "postback_params": None if params is None else "&".join(f"{k}={v}" for k, v in params),
        "network_macros": macros,
        "aliases": {},
        "fields": fields,
        "notes": "; ".join(notes),
        "defect": override.get("defect"),
    }


def extract_network_fields(params: list[list[str]], notes: list[str]) -> list[dict[str, Any]]:
    """Turn REPLACE-style values into declared fields, and add a status when there is none.

    Placeholders get one canonical text per field (REPLACE_STATUS, ...) because the raw data
    reuses the same word for several fields in one URL.
    """
    fields: list[dict[str, Any]] = []
    names = [k for k, _ in params]
    for pair in params:
        name, value = pair
        if name in ("status", "payout", "currency") and value in STATUS_PLACEHOLDERS:
            pair[1] = f"REPLACE_{name.upper()}"
            fields.append(field_dict(placeholder_field(name), None))
        elif name == "status" and value == FAMILY_STATUSES:
            pair[1] = "REPLACE_STATUS"
            fields.append(field_dict(placeholder_field("status"), FAMILY_STATUSES.split(",")))
            notes.append("one postback per event: pick its status among the trained words")
        elif name == "currency" and "," in value:
            choices = value.split(",")
            pair[1] = "REPLACE_CURRENCY"
            fields.append(field_dict(placeholder_field("currency"), choices))
    if "status" not in names:
        params.insert(1, ["status", "REPLACE_STATUS"])
        fields.append(field_dict(placeholder_field("status"), None))
        notes.append(
            "the network sends no status; a postback without one is ignored, so the "
            "status this postback reports is a field"
        )
    return fields


def placeholder_field(name: str) -> Field:
    labels = {
        "status": STATUS_FIELD_LABEL,
        "payout": "Payout this postback reports (a number, or the network's payout macro)",
        "currency": "Currency of the network's payouts (ISO code)",
    }
    return (name, labels[name], f"REPLACE_{name.upper()}")


def network_macros(
    params: list[list[str]], fields: list[dict[str, Any]], *, strict: bool
) -> list[str]:
    """The network's own macros in the postback parameters, in order, each once.

    A value is macros, field placeholders and literal text; anything else stops the build so
    that an unrecognised syntax is looked at rather than shipped.
    """
    placeholders = {f["placeholder_in_url"] for f in fields}
    found: list[str] = []
    for name, value in params:
        training = name.endswith("_status") and name.removesuffix("_status") in BUILT_IN_TYPES
        if value in placeholders or training or name in ("from", "return"):
            continue
        for macro in NETWORK_MACRO.findall(value):
            if macro not in found:
                found.append(macro)
        rest = NETWORK_MACRO.sub("", value)
        if strict and name == "subid" and rest == value:
            raise SystemExit(f"subid={value!r} holds no macro: declare it or mark a defect")
        if strict and not LITERAL.fullmatch(rest):
            raise SystemExit(f"unrecognised value {name}={value!r}")
    return found


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
